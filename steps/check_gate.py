from typing import Annotated

from zenml import step

from cvops.config import GateParams
from cvops.evaluation import Evaluation
from cvops.evidence import log_gate_decision
from cvops.gate import GateDecision, decide
from cvops.quantization import QuantizationReport


@step(experiment_tracker=True)
def check_gate(
    evaluation: Evaluation, quantization: QuantizationReport, gate: GateParams
) -> Annotated[GateDecision, "gate_decision"]:
    """Decide pass/fail on every gate check; the decision is logged, pass or fail, never silent."""
    decision = decide(evaluation, gate, quantization)
    log_gate_decision(decision)
    return decision
