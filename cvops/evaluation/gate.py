"""The promotion gate: every check a model must pass to become the challenger, with its evidence."""

from typing import Literal

from pydantic import BaseModel, computed_field

from cvops.config import GateParams
from cvops.evaluation.reports import ChampionComparison, Evaluation, QuantizationReport

Verdict = Literal["pass", "fail", "skip"]


class GateCheck(BaseModel):
    name: str
    value: float | None
    rule: Literal[">=", "<="]
    threshold: float
    verdict: Verdict
    note: str = ""


class GateDecision(BaseModel):
    """Every check with its value, threshold and verdict; the model passes when none fails."""

    checks: list[GateCheck]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[GateCheck]:
        return [check for check in self.checks if check.verdict == "fail"]

    def table(self) -> str:
        """A fixed-width table for the terminal and the model card."""
        width = max(len(check.name) for check in self.checks)
        lines = [f"{'check':<{width}}  {'value':>9}  rule  {'threshold':>9}  verdict"]
        for check in self.checks:
            value = "—" if check.value is None else f"{check.value:.4g}"
            note = f"  ({check.note})" if check.note else ""
            lines.append(
                f"{check.name:<{width}}  {value:>9}  {check.rule:^4}  {check.threshold:>9.4g}  "
                f"{check.verdict.upper()}{note}"
            )
        lines.append(f"gate: {'PASSED' if self.passed else f'FAILED ({len(self.failed)} checks)'}")
        return "\n".join(lines)


def _check(name: str, value: float | None, rule: Literal[">=", "<="], threshold: float, note: str = "") -> GateCheck:
    if value is None:
        return GateCheck(name=name, value=None, rule=rule, threshold=threshold, verdict="skip", note=note)
    ok = value >= threshold if rule == ">=" else value <= threshold
    verdict: Verdict = "pass" if ok else "fail"
    return GateCheck(name=name, value=value, rule=rule, threshold=threshold, verdict=verdict, note=note)


def _recent_gain(champion: ChampionComparison | None, floor: float) -> GateCheck:
    """gate.min_recent_gain: beat the champion on the labelled production test images (`recent`)."""
    name = "recent accuracy - champion"
    if champion is None:
        return _check(name, None, ">=", floor, "no champion yet")
    if not champion.comparable:
        return _check(name, None, ">=", floor, champion.note)
    if not champion.recent_n:
        return _check(name, None, ">=", floor, "no production images in the test split")
    assert champion.candidate_recent_accuracy is not None and champion.champion_recent_accuracy is not None
    gain = champion.candidate_recent_accuracy - champion.champion_recent_accuracy
    return _check(
        f"recent accuracy - champion v{champion.champion_version}", gain, ">=", floor, f"n={champion.recent_n}"
    )


def _floors(evaluation: Evaluation, params: GateParams) -> list[GateCheck]:
    """The absolute floors: accuracy, macro-F1 and every class's recall; or mAP and every class's AP."""
    metrics = evaluation.metrics
    if evaluation.task == "detection":  # a class without test boxes has AP -1 (COCO's "none"): not judged
        checks = [_check("mAP", metrics["map"], ">=", params.min_map)]
        for name in evaluation.class_names:
            ap = metrics.get(f"ap_{name}", -1.0)
            checks.append(
                _check(
                    f"AP[{name}]",
                    ap if ap >= 0 else None,
                    ">=",
                    params.min_class_ap,
                    "" if ap >= 0 else "no test boxes",
                )
            )
        return checks
    return [
        _check("accuracy", metrics["accuracy"], ">=", params.min_accuracy),
        _check("macro_f1", metrics["macro_f1"], ">=", params.min_macro_f1),
        *(
            _check(f"recall[{name}]", metrics[f"recall_{name}"], ">=", params.min_class_recall)
            for name in evaluation.class_names
        ),
    ]


def decide(evaluation: Evaluation, params: GateParams, quantization: QuantizationReport | None = None) -> GateDecision:
    """Absolute floors, non-inferiority to the champion, slice floors, behaviour, and the size, latency
    and accuracy of the artifact that ships (the torch model's when nothing was exported). A detector's floors
    are on mAP: overall, per class and per slice."""
    detection = evaluation.task == "detection"
    headline, floor = ("mAP", params.min_map) if detection else ("accuracy", params.min_accuracy)
    checks = _floors(evaluation, params)
    champion = evaluation.champion
    if champion is None:
        checks.append(_check(f"{headline} - champion", None, ">=", -params.non_inferiority_margin, "no champion yet"))
    elif not champion.comparable:
        checks.append(_check(f"{headline} - champion", None, ">=", -params.non_inferiority_margin, champion.note))
    else:
        difference = champion.map_difference if detection else champion.accuracy_difference
        note = (
            f"paired 95% interval {champion.difference_ci95_low:+.3f} to {champion.difference_ci95_high:+.3f}"
            if detection
            else f"McNemar p={champion.mcnemar_p_value:.3g}"
        )
        checks.append(
            _check(
                f"{headline} - champion v{champion.champion_version}",
                difference,
                ">=",
                -params.non_inferiority_margin,
                note,
            )
        )
    if params.min_recent_gain is not None:
        checks.append(_recent_gain(champion, params.min_recent_gain))
    slice_floor = params.min_slice_map if detection else params.min_slice_accuracy
    for piece in evaluation.slices:
        name = f"slice {piece.attribute}={piece.value} {headline}"
        if piece.n >= params.min_slice_size:
            checks.append(
                _check(name, piece.mean_ap if detection else piece.accuracy, ">=", slice_floor, f"n={piece.n}")
            )
        else:
            note = f"n={piece.n} < min_slice_size {params.min_slice_size}"
            checks.append(_check(name, None, ">=", slice_floor, note))
    for transform, share in params.min_invariance.checks().items():
        checks.append(_check(f"same prediction under {transform}", evaluation.invariance.get(transform), ">=", share))
    if quantization is not None:
        name = f"{headline} of shipped {quantization.shipped}"
        checks.append(_check(name, quantization.shipped_artifact.score, ">=", floor))
    shipped = quantization.footprint() if quantization else evaluation.footprint
    size, latency = (shipped.size_mb, shipped.latency_ms) if shipped else (None, None)
    checks.append(_check("model size MB", size, "<=", params.max_model_size_mb, shipped.format if shipped else ""))
    note = shipped.describe() if shipped else "not measured"
    checks.append(_check("latency ms (batch 1)", latency, "<=", params.max_latency_ms, note))
    return GateDecision(checks=checks)
