from typing import Annotated

import mlflow
from zenml import step

from cvops.data.prepare import DatasetRef
from cvops.evaluation import evaluate
from cvops.models import resolve_device
from cvops.tracking import TrainedModel, load_trained_model, scratch_dir


@step(experiment_tracker=True)
def evaluate_model(
    trained: TrainedModel, dataset: DatasetRef, device: str, seed: int
) -> Annotated[dict[str, float], "test_metrics"]:
    """Score the trained model on the test split; metrics and the confusion matrix go to MLflow."""
    evaluation = evaluate(load_trained_model(trained), dataset, scratch_dir(), resolve_device(device), seed)
    mlflow.log_metrics({f"test_{name}": value for name, value in evaluation.metrics.items()})
    mlflow.log_artifact(evaluation.confusion_matrix_png, artifact_path="evaluation")
    return evaluation.metrics
