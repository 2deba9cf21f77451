from typing import Annotated

from zenml import step

from cvops.config import GateParams
from cvops.data.audit import DataAudit
from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import Evaluation, QuantizationReport
from cvops.registry.versions import gate


@step(experiment_tracker=True)
def check_gate(
    evaluation: Evaluation, quantization: QuantizationReport, gate_params: GateParams, audit: DataAudit
) -> Annotated[GateDecision, "gate_decision"]:
    """Decide pass/fail on every gate check (the data audit's leakage too); the decision is logged, pass or fail,
    never silent."""
    return gate(evaluation, quantization, gate_params, audit)
