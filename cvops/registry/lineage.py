"""Lineage of a model: which code, data, parameters and pipeline run produced it.

A training run records it twice: as tags (names fixed by ARCHITECTURE.md) for searching and reviewing, and
as files under the run's `lineage/` artifacts (the parameters as params.yaml spells them, and the checkout's
dvc.lock) from which `cvops models reproduce` recreates the inputs.
"""

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from cvops.config import PARAMS_FILE, Params, flatten, load_params

LINEAGE_KEYS = ("git_commit", "git_dirty", "data_version", "params_hash", "zenml_run_id", "pipeline", "overrides")
# how the model was trained: the engine, and the live process group's size and backend (none in one process)
TRAINING_KEYS = ("train_engine", "train_world_size", "train_backend")
LINEAGE_DIR = "lineage"
DVC_LOCK = "dvc.lock"


def git(root: Path, *args: str) -> str | None:
    """A git command's output in `root`, or None outside git or when it fails."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state(root: Path) -> tuple[str, bool]:
    """The checked-out commit ("unknown" outside git) and whether the working tree has changes that a run does
    not record: its params.yaml is recorded (the logged parameters, the `overrides` tag) and so is its dvc.lock
    (lineage/), so a run with -S or --overlay on a clean checkout is not dirty."""
    commit = git(root, "rev-parse", "HEAD") or "unknown"
    prefix = git(root, "rev-parse", "--show-prefix") or ""  # the project's folder in its repository
    changed = (git(root, "diff", "--name-only", "HEAD") or "").splitlines()
    return commit, any(path not in {prefix + PARAMS_FILE, prefix + DVC_LOCK} for path in changed)


def lineage_tags(
    root: Path, params: Params, data_version: str, *, zenml_run_id: str = "", pipeline: str = ""
) -> dict[str, str]:
    """The lineage tags every MLflow run and model version carries (names fixed by ARCHITECTURE.md); `overrides`
    holds, as JSON, each parameter that differs from the commit's params.yaml (-S, an overlay, an edit)."""
    commit, dirty = git_state(root)
    overrides = {key: now for key, _, now in committed_differences(root, params)}
    return {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "data_version": data_version,
        "params_hash": params.hash(),
        "zenml_run_id": zenml_run_id,
        "pipeline": pipeline,
        "overrides": json.dumps(overrides, sort_keys=True) if overrides else "",
    }


def training_tags(engine: str, world_size: int, backend: str) -> dict[str, str]:
    """The TRAINING_KEYS tags of a training run and its model version."""
    return dict(zip(TRAINING_KEYS, (engine, str(world_size), backend or "none"), strict=True))


def committed_differences(root: Path, params: Params) -> list[tuple[str, Any, Any]]:
    """(key, committed value, value now) for each parameter of `params` that differs from the params.yaml of
    the checked-out commit; empty outside git or before params.yaml is committed."""
    text = git(root, "show", f"HEAD:./{PARAMS_FILE}")
    if text is None:
        return []
    with tempfile.TemporaryDirectory(prefix="cvops-committed-") as scratch:
        committed_file = Path(scratch) / PARAMS_FILE
        committed_file.write_text(text, encoding="utf-8")
        committed = flatten(load_params(committed_file).as_params())
    now = flatten(params.as_params())
    return [(key, committed.get(key), value) for key, value in now.items() if committed.get(key) != value]


def log_lineage(root: Path, params: Params, tags: dict[str, str]) -> None:
    """On the active run: the lineage tags, every parameter (to compare runs), and the lineage files."""
    mlflow.set_tags(tags)
    mlflow.log_params(flatten(params.as_params()))
    with tempfile.TemporaryDirectory(prefix="cvops-lineage-") as scratch:
        text = yaml.safe_dump(params.as_params(), sort_keys=False, allow_unicode=True)
        (Path(scratch) / PARAMS_FILE).write_text(text, encoding="utf-8")
        if (root / DVC_LOCK).is_file():
            (Path(scratch) / DVC_LOCK).write_bytes((root / DVC_LOCK).read_bytes())
        mlflow.log_artifacts(scratch, artifact_path=LINEAGE_DIR)


def run_params(run_id: str) -> dict[str, Any]:
    """Every parameter a training run used, by dotted key: from its lineage/params.yaml, or for a run logged
    before cvops kept that file, parsed back from the run's MLflow params (logged as text)."""
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{LINEAGE_DIR}/{PARAMS_FILE}")
        return flatten(yaml.safe_load(text) or {})
    except (MlflowException, OSError):
        return {key: _logged_value(raw) for key, raw in mlflow.get_run(run_id).data.params.items()}


def _logged_value(raw: str) -> Any:
    """A parameter MLflow stored as str(value), read back: None, numbers, booleans and lists as such."""
    if raw == "None":
        return None
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, dict) else value
