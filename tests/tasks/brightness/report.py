from cvops.config import GateParams
from cvops.evaluation.gate import GateCheck, check
from cvops.evaluation.reports import Evaluation


def floors(evaluation: Evaluation, params: GateParams) -> list[GateCheck]:
    return [check("within tolerance", evaluation.metrics["within_tolerance"], ">=", params.min_accuracy)]


def headline_metric(params: GateParams) -> tuple[str, float]:
    return "within tolerance", params.min_accuracy


def champion_difference(evaluation: Evaluation) -> tuple[float | None, str]:
    return None, "no paired comparison"


def slice_floor(params: GateParams) -> float:
    return params.min_slice_accuracy


def slice_scores(evaluation: Evaluation) -> list[float | None]:
    return [None] * len(evaluation.slices)


def headline(metrics: dict[str, float]) -> str:
    return f"MAE {metrics['mae']:.4f}"
