"""What the benchmarks read from this checkout (after `make demo`): its params, registry and a version."""

from pathlib import Path
from typing import Any

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads


def registered_version(version: str | None) -> tuple[Any, Any, Any, Any]:
    """(project, params, registry, version info): VERSION, else the champion, else the newest version."""
    from cvops.config import Project
    from cvops.registry.model_registry import CHAMPION, ModelRegistry
    from cvops.registry.tracking import use_project_store
    from cvops.stack.checkout import configure_environment

    project = Project.find(REPO)
    configure_environment(project)
    params = project.params()
    use_project_store(project, params.mlflow.experiment)
    registry = ModelRegistry.of(project, params.registry.model_name)
    versions = registry.versions()
    if not versions:
        raise SystemExit("no registered version: run `make demo` first")
    info = registry.get(version) if version else (registry.alias(CHAMPION) or versions[0])
    return project, params, registry, info
