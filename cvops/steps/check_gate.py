from typing import Annotated

from zenml import step

from cvops.config import GateParams
from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import Evaluation, QuantizationReport
from cvops.registry.versions import gate


@step(experiment_tracker=True)
def check_gate(
    evaluation: Evaluation, quantization: QuantizationReport, gate_params: GateParams
) -> Annotated[GateDecision, "gate_decision"]:
    """Decide pass/fail on every gate check; the decision is logged, pass or fail, never silent."""
    return gate(evaluation, quantization, gate_params)
