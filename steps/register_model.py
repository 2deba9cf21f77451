from typing import Annotated

import mlflow
from zenml import step

from cvops.config import Params, Project
from cvops.data.prepare import DatasetRef
from cvops.evaluation import Evaluation
from cvops.evidence import quantization_tags, reference_tags
from cvops.gate import GateDecision
from cvops.lineage import LINEAGE_KEYS
from cvops.modelcard import ModelCard, write_model_card
from cvops.monitoring.reference import ReferenceSummary
from cvops.quantization import QuantizationReport
from cvops.registry import ModelRegistry
from cvops.tracking import TrainedModel, scratch_dir


@step(experiment_tracker=True)
def register_model(
    trained: TrainedModel,
    dataset: DatasetRef,
    evaluation: Evaluation,
    quantization: QuantizationReport,
    decision: GateDecision,
    reference: ReferenceSummary,
    params: Params,
    trigger: dict[str, str] | None = None,
) -> Annotated[str, "model_version"]:
    """Register the version with its evidence, ONNX artifacts and model card: `challenger` + approval=pending
    when the gate passed (champion at once when registry.require_approval is false), no alias when it failed."""
    registry = ModelRegistry(params.registry.model_name, Project.find().registry_lock)
    run = mlflow.get_run(trained.run_id)
    lineage = {k: v for k, v in run.data.tags.items() if k in LINEAGE_KEYS}
    tags = {
        **lineage,
        **quantization_tags(quantization, run.info.artifact_uri),
        **reference_tags(run.info.artifact_uri, reference),
    }
    if trigger:  # a drift-triggered retraining: the episode, verdict and report that started it
        tags.update(trigger)
        mlflow.set_tags(trigger)
    version = registry.register(trained, evaluation.metrics, tags, decision, params.registry.require_approval)
    card = ModelCard(
        model_name=registry.name, version=version, data_source=params.data.source, trained=trained,
        dataset=dataset, evaluation=evaluation, decision=decision, lineage=lineage, quantization=quantization,
    )  # fmt: skip
    markdown, _ = write_model_card(card, scratch_dir())
    mlflow.log_artifacts(str(markdown.parent), artifact_path="model_card")
    registry.tag(version, {"model_card": f"{run.info.artifact_uri}/model_card/model_card.html"})
    return version
