from typing import Annotated

from zenml import step

from cvops.config import Params, Project
from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import EvaluationSetup, load_champion
from cvops.evaluation.reports import Evaluation
from cvops.registry.evidence import log_evaluation
from cvops.registry.model_registry import ModelRegistry
from cvops.registry.tracking import TrainedModel, load_trained_model, scratch_dir
from cvops.tasks import task
from cvops.training.models import resolve_device


@step(experiment_tracker=True)
def evaluate_model(trained: TrainedModel, dataset: DatasetRef, params: Params) -> Annotated[Evaluation, "evaluation"]:
    """Test-split evidence, with the champion scored on the same images (a detector's tracking too, with
    `evaluate.tracking`); all of it goes to MLflow."""
    champion = load_champion(ModelRegistry.of(Project.find(), params.registry.model_name))
    model, device = load_trained_model(trained), resolve_device(params.base.device)
    setup = EvaluationSetup(
        scratch_dir(),
        device,
        params.base.seed,
        params.evaluate,
        params.measure,
        invariance_checks=tuple(params.gate.min_invariance.checks()),
        detect=params.detect,
        video=params.video,
    )
    evaluation = task(dataset.task).val.evaluate(model, dataset, setup, champion)
    log_evaluation(evaluation)
    return evaluation
