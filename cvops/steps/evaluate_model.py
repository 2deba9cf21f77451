from typing import Annotated

from zenml import step

from cvops.config import (
    BaseParams,
    DetectParams,
    EvaluateParams,
    InvarianceParams,
    MeasureParams,
    Project,
    RegistryParams,
)
from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import EvaluationSetup, load_champion
from cvops.evaluation.reports import Evaluation
from cvops.registry.evidence import log_evaluation
from cvops.registry.model_registry import ModelRegistry
from cvops.registry.tracking import TrainedModel, load_trained_model, scratch_dir
from cvops.tasks import task
from cvops.training.models import resolve_device


@step(experiment_tracker=True)
def evaluate_model(
    trained: TrainedModel,
    dataset: DatasetRef,
    base: BaseParams,
    evaluate_params: EvaluateParams,
    measure: MeasureParams,
    invariance: InvarianceParams,
    registry: RegistryParams,
    detect: DetectParams,
) -> Annotated[Evaluation, "evaluation"]:
    """Test-split evidence, with the champion scored on the same images; all of it goes to MLflow."""
    champion = load_champion(ModelRegistry.of(Project.find(), registry.model_name))
    model, device = load_trained_model(trained), resolve_device(base.device)
    setup = EvaluationSetup(
        scratch_dir(),
        device,
        base.seed,
        evaluate_params,
        measure,
        invariance_checks=tuple(invariance.checks()),
        score_threshold=detect.score_threshold,
    )
    evaluation = task(dataset.task).val.evaluate(model, dataset, setup, champion)
    log_evaluation(evaluation)
    return evaluation
