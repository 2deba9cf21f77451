"""Process environment and the ZenML + MLflow + DVC set-up of a checkout (`cvops init`)."""

import contextlib
import logging
import os
from typing import Any

from cvops.config import Params, Project
from cvops.errors import NotInitializedError

STACK = "cvops-local"
TRACKER = "cvops-mlflow"
MODEL_REGISTRY = "cvops-mlflow-registry"
# Offline-first: no analytics, no version checks, no hub downloads. Users may override any of them.
OFFLINE_ENV = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "DVC_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
}
log = logging.getLogger(__name__)


def go_offline() -> None:
    """Set the offline switches of every library cvops uses (OFFLINE_ENV), unless already set: for the CLI,
    and for anything else that imports cvops first (the tests, the benchmarks)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def configure_environment(project: Project) -> None:
    """Set this process's offline switches and keep ZenML's config and SQLite store inside the checkout.

    Called by the CLI before ZenML is imported; a remote set-up sets ZENML_CONFIG_PATH (or
    ZENML_STORE_URL) itself and wins, since nothing here overrides a value already set.
    """
    go_offline()
    os.environ.setdefault("ZENML_CONFIG_PATH", str(project.zenml_dir / "global"))
    os.environ.setdefault("CVOPS_ROOT", str(project.root))
    os.environ.setdefault("BENTOML_HOME", str(project.bentoml_home))


def _init_dvc(project: Project) -> bool:
    if (project.root / ".dvc").is_dir():
        return False
    from dvc.repo import Repo

    Repo.init(str(project.root), no_scm=not (project.root / ".git").exists())
    return True


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


def init_project(project: Project, params: Params) -> list[str]:
    """Create the checkout's local state; safe to run again. Returns what was done, for the user."""
    from cvops.data.versioning import configure_remote
    from cvops.tracking import use_project_store

    done = []
    for directory in (project.data_dir, project.mlflow_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if _init_dvc(project):
        done.append("initialised DVC")
    configure_remote(project, params.data.remote)
    done.append(f"DVC remote: {params.data.remote} (`cvops data push` / `pull`)")
    experiment = params.mlflow.experiment
    use_project_store(project, experiment)
    done.append(f"MLflow store: {project.tracking_uri} (experiment '{experiment}')")

    from zenml.client import Client
    from zenml.enums import StackComponentType

    if not (project.zenml_dir / "config.yaml").is_file():
        Client.initialize(root=project.root)
        done.append(f"initialised ZenML repository in {project.zenml_dir}")
    client = Client()
    _ensure_component(
        client, TRACKER, "mlflow", StackComponentType.EXPERIMENT_TRACKER, {"tracking_uri": project.tracking_uri}
    )
    _ensure_component(client, MODEL_REGISTRY, "mlflow", StackComponentType.MODEL_REGISTRY, {})
    try:
        client.get_stack(STACK)
    except KeyError:
        client.create_stack(
            STACK,
            components={
                StackComponentType.ORCHESTRATOR: "default",
                StackComponentType.ARTIFACT_STORE: "default",
                StackComponentType.EXPERIMENT_TRACKER: TRACKER,
                StackComponentType.MODEL_REGISTRY: MODEL_REGISTRY,
            },
        )
    if client.active_stack_model.name != STACK:
        client.activate_stack(STACK)
    done.append(f"ZenML stack '{STACK}' active (local orchestrator, MLflow tracker and registry)")
    return done


def ensure_initialized(project: Project) -> None:
    """Fail with what to do when `cvops init` has not run in this checkout."""
    if not (project.zenml_dir / "config.yaml").is_file() or not project.mlflow_dir.is_dir():
        raise NotInitializedError(f"{project.root} is not initialised: run `cvops init` first")
