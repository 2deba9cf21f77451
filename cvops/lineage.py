"""Lineage of a model: which code, data, parameters and pipeline run produced it."""

import subprocess
from pathlib import Path

from cvops.config import Params

LINEAGE_KEYS = ("git_commit", "git_dirty", "data_version", "params_hash", "zenml_run_id", "pipeline")


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state(root: Path) -> tuple[str, bool]:
    """The checked-out commit ("unknown" outside git) and whether the working tree has changes."""
    commit = _git(root, "rev-parse", "HEAD") or "unknown"
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def lineage_tags(
    root: Path, params: Params, data_version: str, *, zenml_run_id: str = "", pipeline: str = ""
) -> dict[str, str]:
    """The lineage tags every MLflow run and model version carries (names fixed by ARCHITECTURE.md)."""
    commit, dirty = git_state(root)
    return {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "data_version": data_version,
        "params_hash": params.hash(),
        "zenml_run_id": zenml_run_id,
        "pipeline": pipeline,
    }
