"""Process environment and the ZenML + MLflow + DVC set-up of a checkout (`cvops init`)."""

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Literal

from cvops.config import Params, Project
from cvops.env import (
    AWS_ACCESS_KEY_ID_ENV,
    AWS_ENDPOINT_URL_ENV,
    AWS_SECRET_ACCESS_KEY_ENV,
    BENTOML_HOME_ENV,
    MLFLOW_TRACKING_PASSWORD_ENV,
    MLFLOW_TRACKING_URI_ENV,
    MLFLOW_TRACKING_USERNAME_ENV,
    ROOT_ENV,
    S3_URL_ENV,
    ZENML_CONFIG_PATH_ENV,
    ZENML_STORE_URL_ENV,
    go_offline,
)
from cvops.errors import ConfigError, NotInitializedError
from cvops.stack.scaffold import init_dvc

STACK, TEAM_STACK = "cvops-local", "cvops-team"
TRACKER, TEAM_TRACKER = "cvops-mlflow", "cvops-mlflow-team"
MODEL_REGISTRY = "cvops-mlflow-registry"
TEAM_ARTIFACTS = "cvops-s3"
# ZenML secrets holding the team stack's credentials: components refer to them, nothing else stores them
MLFLOW_SECRET, S3_SECRET = "cvops-mlflow", "cvops-s3"
StackKind = Literal["local", "team"]


def configure_environment(project: Project) -> None:
    """Set this process's offline switches and keep ZenML's config and SQLite store inside the checkout.

    Called by the CLI before ZenML is imported; a remote set-up sets ZENML_CONFIG_PATH (or
    ZENML_STORE_URL) itself and wins, since nothing here overrides a value already set.
    """
    go_offline()
    os.environ.setdefault(ZENML_CONFIG_PATH_ENV, str(project.zenml_dir / "global"))
    os.environ.setdefault(ROOT_ENV, str(project.root))
    os.environ.setdefault(BENTOML_HOME_ENV, str(project.bentoml_home))


def _ensure_component(client: Any, name: str, flavor: str, component_type: Any, configuration: dict[str, str]) -> None:
    from zenml.exceptions import EntityExistsError

    try:
        existing = client.get_stack_component(component_type, name)
    except KeyError:
        with contextlib.suppress(EntityExistsError):  # created concurrently
            client.create_stack_component(name, flavor, component_type, configuration)
        return
    if any(existing.configuration.get(k) != v for k, v in configuration.items()):
        client.update_stack_component(name, component_type, configuration=configuration)


@dataclass(frozen=True)
class TeamServers:
    """Where the team stack's servers are and how to reach them, read from the environment (`.team/env`)."""

    tracking_uri: str
    mlflow_user: str
    mlflow_password: str
    s3_url: str  # s3://bucket: DVC data under dvc/, ZenML artifacts under zenml/
    s3_endpoint: str | None  # None for AWS itself
    s3_key: str
    s3_secret: str

    NEEDED = (
        MLFLOW_TRACKING_URI_ENV,
        MLFLOW_TRACKING_USERNAME_ENV,
        MLFLOW_TRACKING_PASSWORD_ENV,
        ZENML_STORE_URL_ENV,
        S3_URL_ENV,
        AWS_ACCESS_KEY_ID_ENV,
        AWS_SECRET_ACCESS_KEY_ENV,
    )

    @classmethod
    def from_env(cls) -> "TeamServers":
        missing = [name for name in cls.NEEDED if not os.environ.get(name)]
        if missing:
            raise ConfigError(
                f"`cvops init --stack team` needs {', '.join(missing)}: `. .team/env` after "
                "`cvops team up`, or set them for your servers (docs: how-to/team-stack.md)"
            )
        if not os.environ[MLFLOW_TRACKING_URI_ENV].startswith(("http://", "https://")):
            raise ConfigError(f"{MLFLOW_TRACKING_URI_ENV} must be the team's MLflow server (http:// or https://)")
        env = os.environ
        return cls(
            env[MLFLOW_TRACKING_URI_ENV],
            env[MLFLOW_TRACKING_USERNAME_ENV],
            env[MLFLOW_TRACKING_PASSWORD_ENV],
            env[S3_URL_ENV].rstrip("/"),
            env.get(AWS_ENDPOINT_URL_ENV),
            env[AWS_ACCESS_KEY_ID_ENV],
            env[AWS_SECRET_ACCESS_KEY_ENV],
        )


def init_project(project: Project, params: Params, stack: StackKind = "local") -> list[str]:
    """Create the checkout's local state and activate the ZenML stack; safe to run again. Returns what was done.

    The team stack reads its servers from the environment; its credentials go to ZenML secrets, never to files.
    """
    from cvops.data.versioning import configure_remote, inbox_ready
    from cvops.registry.tracking import use_project_store

    team = TeamServers.from_env() if stack == "team" else None
    done = []
    for directory in (project.data_dir, project.mlflow_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if init_dvc(project.root):
        done.append("initialised DVC")
    inbox_ready(project)
    remote = f"{team.s3_url}/dvc" if team else params.data.remote
    configure_remote(project, remote, "team" if team else "local", team.s3_endpoint if team else None)
    done.append(f"DVC remote: {remote} (`cvops data push` / `pull`)")
    experiment = params.mlflow.experiment
    use_project_store(project, experiment)
    done.append(f"MLflow: {project.tracking_uri} (experiment '{experiment}')")

    from zenml.client import Client

    if not (project.zenml_dir / "config.yaml").is_file():
        Client.initialize(root=project.root)
        done.append(f"initialised ZenML repository in {project.zenml_dir}")
    own_config = project.zenml_dir / "global"
    if os.environ.get(ZENML_CONFIG_PATH_ENV) == str(own_config):  # ZenML keeps its API key and tokens there
        own_config.mkdir(parents=True, exist_ok=True)
        own_config.chmod(0o700)
    client = Client()
    name, components = (TEAM_STACK, _team_components(client, team)) if team else (STACK, _local_components(project))
    try:
        client.get_stack(name)
    except KeyError:
        client.create_stack(name, components=components)
    if client.active_stack_model.name != name:
        client.activate_stack(name)
    where = f"ZenML server {client.zen_store.url}, S3 artifact store" if team else "local orchestrator"
    done.append(f"ZenML stack '{name}' active ({where}, MLflow tracker and registry)")
    return done


def _local_components(project: Project) -> dict[Any, str]:
    from zenml.client import Client
    from zenml.enums import StackComponentType as Type

    client = Client()
    _ensure_component(client, TRACKER, "mlflow", Type.EXPERIMENT_TRACKER, {"tracking_uri": project.tracking_uri})
    _ensure_component(client, MODEL_REGISTRY, "mlflow", Type.MODEL_REGISTRY, {})
    return {
        Type.ORCHESTRATOR: "default",
        Type.ARTIFACT_STORE: "default",
        Type.EXPERIMENT_TRACKER: TRACKER,
        Type.MODEL_REGISTRY: MODEL_REGISTRY,
    }


def _team_components(client: Any, team: TeamServers) -> dict[Any, str]:
    """S3 artifact store and MLflow tracker + registry on the server, their credentials held as ZenML secrets."""
    from zenml.enums import StackComponentType as Type

    _ensure_secret(client, MLFLOW_SECRET, {"username": team.mlflow_user, "password": team.mlflow_password})
    _ensure_secret(client, S3_SECRET, {"key": team.s3_key, "secret": team.s3_secret})
    store = {"path": f"{team.s3_url}/zenml", "key": f"{{{{{S3_SECRET}.key}}}}", "secret": f"{{{{{S3_SECRET}.secret}}}}"}
    if team.s3_endpoint:
        store["client_kwargs"] = {"endpoint_url": team.s3_endpoint}  # type: ignore[assignment]
    _ensure_component(client, TEAM_ARTIFACTS, "s3", Type.ARTIFACT_STORE, store)
    tracker = {
        "tracking_uri": team.tracking_uri,
        "tracking_username": f"{{{{{MLFLOW_SECRET}.username}}}}",
        "tracking_password": f"{{{{{MLFLOW_SECRET}.password}}}}",
    }
    _ensure_component(client, TEAM_TRACKER, "mlflow", Type.EXPERIMENT_TRACKER, tracker)
    _ensure_component(client, MODEL_REGISTRY, "mlflow", Type.MODEL_REGISTRY, {})
    return {
        Type.ORCHESTRATOR: "default",
        Type.ARTIFACT_STORE: TEAM_ARTIFACTS,
        Type.EXPERIMENT_TRACKER: TEAM_TRACKER,
        Type.MODEL_REGISTRY: MODEL_REGISTRY,
    }


def _ensure_secret(client: Any, name: str, values: dict[str, str]) -> None:
    try:
        client.get_secret_by_name_and_private_status(name)
    except KeyError:
        client.create_secret(name, values=values)
        return
    client.update_secret(name, add_or_update_values=values)


def ensure_initialized(project: Project) -> None:
    """Fail with what to do when `cvops init` has not run in this checkout."""
    if not (project.zenml_dir / "config.yaml").is_file() or not project.mlflow_dir.is_dir():
        raise NotInitializedError(f"{project.root} is not initialised: run `cvops init` first")
