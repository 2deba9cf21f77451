"""The MLflow model registry: versions with metrics, lineage and approval tags."""

import logging

from mlflow.tracking import MlflowClient

from cvops.tracking import TrainedModel

log = logging.getLogger(__name__)
HEADLINE_METRICS = ("accuracy", "macro_f1")


def register_model(trained: TrainedModel, model_name: str, metrics: dict[str, float], tags: dict[str, str]) -> str:
    """Register `trained` as a new version of `model_name`, tagged with its metrics and lineage."""
    client = MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{model_name}'"):
        client.create_registered_model(model_name, description="cvops image classifier")
    version = client.create_model_version(
        name=model_name,
        source=trained.model_uri,
        run_id=trained.run_id,
        tags={**tags, **{k: f"{metrics[k]:.4f}" for k in HEADLINE_METRICS if k in metrics}},
        description=f"{trained.architecture} on {len(trained.class_names)} classes ({', '.join(trained.class_names)})",
    )
    log.info("registered %s version %s", model_name, version.version)
    return str(version.version)
