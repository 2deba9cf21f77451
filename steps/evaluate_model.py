from typing import Annotated

from zenml import step

from cvops.config import Params, Project
from cvops.data.prepare import DatasetRef
from cvops.evaluation import Evaluation, evaluate
from cvops.evidence import log_evaluation
from cvops.models import resolve_device
from cvops.registry import ModelRegistry
from cvops.tracking import TrainedModel, load_trained_model, scratch_dir


@step(experiment_tracker=True)
def evaluate_model(trained: TrainedModel, dataset: DatasetRef, params: Params) -> Annotated[Evaluation, "evaluation"]:
    """Test-split evidence, with the champion scored on the same images; all of it goes to MLflow."""
    champion = ModelRegistry(params.registry.model_name, Project.find().registry_lock).load_champion()
    evaluation = evaluate(
        load_trained_model(trained), dataset, scratch_dir(), resolve_device(params.base.device), params.base.seed,
        params.evaluate, tuple(params.gate.min_invariance.checks()), champion,
    )  # fmt: skip
    log_evaluation(evaluation)
    return evaluation
