from typing import Annotated

from zenml import step

from cvops.config import Project, RegistryParams
from cvops.data.prepare import DatasetRef
from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import Evaluation, QuantizationReport
from cvops.monitoring.reference import ReferenceSummary
from cvops.registry.model_registry import ModelRegistry
from cvops.registry.tracking import TrainedModel
from cvops.registry.versions import Registration, VersionOrigin, register


@step(experiment_tracker=True)
def register_model(
    trained: TrainedModel,
    dataset: DatasetRef,
    evaluation: Evaluation,
    quantization: QuantizationReport,
    decision: GateDecision,
    reference: ReferenceSummary,
    registry: RegistryParams,
    origin: VersionOrigin,
) -> Annotated[str, "model_version"]:
    """Register the version with its evidence, ONNX artifacts and model card: `challenger` + approval=pending
    when the gate passed (champion at once when registry.require_approval is false), no alias when it failed."""
    evidence = Registration(trained, dataset, evaluation, quantization, decision, reference)
    return register(
        ModelRegistry.of(Project.find(), registry.model_name),
        evidence,
        registry.require_approval,
        origin.data_source,
        origin.trigger,
    )
