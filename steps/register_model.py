from typing import Annotated

import mlflow
from zenml import step

from cvops.registry import register_model as register_version
from cvops.tracking import TrainedModel


@step(experiment_tracker=True)
def register_model(
    trained: TrainedModel, metrics: dict[str, float], model_name: str
) -> Annotated[str, "model_version"]:
    """Register the model in MLflow with its test metrics and the run's lineage tags."""
    run = mlflow.get_run(trained.run_id)
    lineage = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    return register_version(trained, model_name, metrics, lineage)
