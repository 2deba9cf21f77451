"""`cvops status`: where a project stands, read from its stores in a few seconds, changing nothing.

The project (root, task, registered model), its stack and whether each server it uses answers, its data
version, the champion and challenger with what they ship, and the last training and monitoring runs with
their verdicts.
"""

import os
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import BaseModel

from cvops.config import Params, Project
from cvops.env import AWS_ENDPOINT_URL_ENV, S3_URL_ENV, ZENML_STORE_URL_ENV
from cvops.errors import CvopsError

CONNECT_TIMEOUT_S = 3.0


class ServerState(BaseModel):
    name: str  # mlflow, zenml, s3, service
    url: str
    answers: bool


class VersionState(BaseModel):
    alias: str
    version: str
    ships: str | None  # onnx-fp32 | onnx-int8
    ships_score: float | None  # the shipped file's test accuracy (a detector's: mAP)
    approval: str


class RunState(BaseModel):
    pipeline: str  # training | monitoring
    run_name: str
    run_id: str  # the MLflow run
    started: datetime
    status: str  # MLflow's: FINISHED, FAILED, RUNNING, KILLED
    verdict: str | None  # training: the gate (passed, failed); monitoring: drift, no_drift, not_enough_data
    model_version: str | None  # training: the version it registered; monitoring: the champion it checked


class ProjectStatus(BaseModel):
    """`cvops status`: where this project stands."""

    root: str
    task: str
    model: str  # the registered model (registry.model_name, or the task's)
    stack: str  # local (SQLite, files) or team (servers)
    servers: list[ServerState]
    data_version: str | None  # None before the data is prepared
    versions: list[VersionState]  # champion and challenger, where set
    last_training: RunState | None
    last_monitoring: RunState | None


def project_status(project: Project, params: Params, monitoring_experiment: str) -> ProjectStatus:
    from cvops.data.versioning import data_version
    from cvops.registry.aliases import CHALLENGER, CHAMPION
    from cvops.registry.model_registry import SHIPPED_FORMAT_TAG, SHIPPED_SCORE_TAG, ModelRegistry
    from cvops.registry.tracking import use_project_store

    found = servers(project, params)
    store = next(server for server in found if server.name == "mlflow")
    versions: list[VersionState] = []
    training, monitoring = None, None
    if store.answers:
        use_project_store(project, params.mlflow.experiment)
        registry = ModelRegistry.of(project, params.registry.model_name)
        for alias in (CHAMPION, CHALLENGER):
            if (info := registry.alias(alias)) is not None:
                score = info.tags.get(SHIPPED_SCORE_TAG)
                state = VersionState(
                    alias=alias,
                    version=info.version,
                    ships=info.tags.get(SHIPPED_FORMAT_TAG),
                    ships_score=float(score) if score else None,
                    approval=info.approval,
                )
                versions.append(state)
        training = _last_run(params.mlflow.experiment, "training", "gate")
        monitoring = _last_run(monitoring_experiment, "monitoring", "drift")
        if training is not None:
            registered = registry.client.search_model_versions(f"run_id = '{training.run_id}'")
            training.model_version = str(registered[0].version) if registered else None
    try:
        version: str | None = data_version(project)
    except CvopsError:
        version = None
    return ProjectStatus(
        root=str(project.root),
        task=params.task,
        model=params.registry.model_name,
        stack="team" if project.tracking_server else "local",
        servers=found,
        data_version=version,
        versions=versions,
        last_training=training,
        last_monitoring=monitoring,
    )


def servers(project: Project, params: Params) -> list[ServerState]:
    """The servers this project uses, and whether each answers (a TCP connection within a few seconds)."""
    servers = []
    if project.tracking_server:
        servers.append(ServerState(name="mlflow", url=project.tracking_uri, answers=answers(project.tracking_uri)))
    else:
        store = project.mlflow_dir / "mlflow.db"
        servers.append(ServerState(name="mlflow", url=f"sqlite:///{store}", answers=store.is_file()))
    if zenml := os.environ.get(ZENML_STORE_URL_ENV):
        servers.append(ServerState(name="zenml", url=zenml, answers=answers(zenml)))
    if os.environ.get(S3_URL_ENV) and (endpoint := os.environ.get(AWS_ENDPOINT_URL_ENV)):
        servers.append(ServerState(name="s3", url=endpoint, answers=answers(endpoint)))
    service = f"http://127.0.0.1:{params.serve.port}"  # `cvops serve` on this machine
    servers.append(ServerState(name="service", url=service, answers=answers(service)))
    return servers


def answers(url: str, default_port: int = 80) -> bool:
    """Whether something accepts a TCP connection at `url`'s host and port within a few seconds."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else default_port)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _last_run(experiment: str, pipeline: str, verdict_tag: str) -> RunState | None:
    """The newest run of `pipeline` in `experiment` (a training run's version is looked up by its run id)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id], f"tags.pipeline = '{pipeline}'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        return None
    run = runs[0]
    tags = run.data.tags
    return RunState(
        pipeline=pipeline,
        run_name=run.info.run_name or run.info.run_id,
        run_id=run.info.run_id,
        started=datetime.fromtimestamp(run.info.start_time / 1000, UTC),
        status=run.info.status,
        verdict=tags.get(verdict_tag),
        model_version=tags.get("model_version"),
    )
