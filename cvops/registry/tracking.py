"""MLflow: experiments on the project's store, parameters, trained models and their loading.

MLflow is the model store: steps pass a `TrainedModel` reference, not the weights. torch is imported only
by the functions that log or load weights, so reading references (the registry) stays light.
"""

import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cloudpickle
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from cvops.config import Project, is_reference
from cvops.console import quiet
from cvops.data.preprocess import LEGACY_DECODER, LEGACY_RESIZE, Decoder, Resize
from cvops.errors import ModelError
from cvops.references import top_package

if TYPE_CHECKING:
    from torch import nn

MODEL_ARTIFACT = "model"


class TrainedModel(BaseModel):
    """A trained model logged to MLflow, with what inference needs besides the weights."""

    model_uri: str
    run_id: str
    architecture: str
    class_names: list[str]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    best_epoch: int
    resize: Resize = LEGACY_RESIZE  # how images became its input (models logged before prepare.resize: stretch)
    decoder: Decoder = LEGACY_DECODER  # how their JPEGs were decoded (models logged before prepare.decoder: full)

    @property
    def model_id(self) -> str | None:
        """The MLflow logged model's id (a tracking server refuses a version from `models:/<id>` without it)."""
        return self.model_uri.removeprefix("models:/") if self.model_uri.startswith("models:/m-") else None


def use_project_store(project: Project, experiment: str) -> str:
    """Point MLflow at the project's store and make sure `experiment` exists there; returns its id.

    A local store's experiment gets an explicit artifact location so artifacts never land in ./mlruns; a
    server's keeps the server's own (proxied to its artifact store).
    """
    mlflow.set_tracking_uri(project.tracking_uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    if project.tracking_server:
        return client.create_experiment(experiment)
    project.mlflow_dir.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(experiment, artifact_location=f"{project.artifact_location}/{experiment}")


def log_trained_model(
    model: "nn.Module",
    architecture: str,
    class_names: list[str],
    image_size: int,
    best_epoch: int,
    *,
    resize: Resize,
    decoder: Decoder,
) -> TrainedModel:
    """Log the model to the active MLflow run and return a reference to it."""
    import mlflow.pytorch
    import torch

    from cvops.training.models import normalization

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_trained_model needs an active MLflow run")
    model = model.cpu().eval()
    mean, std = normalization(model)
    if is_reference(architecture):  # the user's model: its package's code goes into the pickle, so that any
        # process loads it (quantize, explain, Ray actors, another host), not only one started in the project
        cloudpickle.register_pickle_by_value(sys.modules[top_package(architecture)])
    # "pt2" needs torch.export tracing, which not every timm model supports; MLflow warns about pickle every time
    with quiet("mlflow.pytorch", level=logging.ERROR):
        info = mlflow.pytorch.log_model(
            model,
            name=MODEL_ARTIFACT,
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "timm"],
        )
    return TrainedModel(
        model_uri=info.model_uri,
        run_id=run.info.run_id,
        architecture=architecture,
        class_names=class_names,
        image_size=image_size,
        resize=resize,
        decoder=decoder,
        mean=mean,
        std=std,
        best_epoch=best_epoch,
    )


@dataclass(frozen=True)
class EpochMetrics:
    """Logs each epoch's metrics to one MLflow run, from whichever process trains: the step's own, or rank 0 of
    a Ray Train group on another node (it pickles, and names its store and run rather than relying on the
    active run of this process)."""

    tracking_uri: str
    run_id: str

    @classmethod
    def to_active_run(cls) -> "EpochMetrics":
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("EpochMetrics.to_active_run needs an active MLflow run")
        return cls(mlflow.get_tracking_uri(), run.info.run_id)

    def __call__(self, metrics: dict[str, float], epoch: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, epoch) for key, value in metrics.items()]
        MlflowClient(self.tracking_uri).log_batch(self.run_id, metrics=batch)


def load_trained_model(trained: TrainedModel) -> "nn.Module":
    import mlflow.pytorch

    from cvops import renames

    try:  # a model logged by an earlier cvops names modules that have moved since: the unpickler maps them
        with quiet("mlflow.pytorch", level=logging.ERROR):  # it warns that this is not the pickle module it saved with
            model = mlflow.pytorch.load_model(trained.model_uri, map_location="cpu", pickle_module=renames)
    except Exception as err:  # MLflow raises several types for a missing or broken model
        raise ModelError(f"cannot load model {trained.model_uri}: {err}".splitlines()[0]) from err
    return model.eval()


def scratch_dir() -> Path:
    """A temporary folder for files that are only written to be logged."""
    return Path(tempfile.mkdtemp(prefix="cvops-"))
