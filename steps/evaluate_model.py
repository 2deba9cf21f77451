from typing import Annotated

from zenml import step

from cvops.config import BaseParams, EvaluateParams, InvarianceParams, MeasureParams, Project, RegistryParams
from cvops.data.prepare import DatasetRef
from cvops.evaluation import evaluate, load_champion
from cvops.evidence import log_evaluation
from cvops.models import resolve_device
from cvops.registry import ModelRegistry
from cvops.reports import Evaluation
from cvops.tracking import TrainedModel, load_trained_model, scratch_dir


@step(experiment_tracker=True)
def evaluate_model(
    trained: TrainedModel,
    dataset: DatasetRef,
    base: BaseParams,
    evaluate_params: EvaluateParams,
    measure: MeasureParams,
    invariance: InvarianceParams,
    registry: RegistryParams,
) -> Annotated[Evaluation, "evaluation"]:
    """Test-split evidence, with the champion scored on the same images; all of it goes to MLflow."""
    champion = load_champion(ModelRegistry.of(Project.find(), registry.model_name))
    evaluation = evaluate(
        load_trained_model(trained), dataset, scratch_dir(), resolve_device(base.device), base.seed, evaluate_params,
        measure, tuple(invariance.checks()), champion,
    )  # fmt: skip
    log_evaluation(evaluation)
    return evaluation
