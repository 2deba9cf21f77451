"""Entry layer: `cvops models reproduce V`, a registered version trained again from its lineage.

The version's commit is checked out in a temporary git worktree; its parameters (the run's
lineage/params.yaml) and its dvc.lock (lineage/dvc.lock) are written there, and DVC restores the data from
the checkout's cache or its remote; the training pipeline then runs in the worktree, with the commit's
code. The rerun goes to the experiment `<experiment>-reproduce` and the registered model `<name>-reproduce`,
so no alias of the original moves; the original gets tags saying when it was reproduced and what differed.
It reproduces when the data version is the same and each headline metric lies in the original's 95%
bootstrap interval.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from cvops.config import PARAMS_FILE, Params, Project
from cvops.data.versioning import restore_from
from cvops.env import MLFLOW_TRACKING_URI_ENV, OVERLAY_ENV, PYTHONPATH_ENV, ROOT_ENV
from cvops.errors import LineageError
from cvops.registry.lineage import DVC_LOCK, LINEAGE_DIR, git, run_params
from cvops.registry.model_registry import DISTILLED_FROM_TAG, ModelRegistry, VersionInfo
from cvops.registry.tracking import use_project_store

SUFFIX = "-reproduce"
INTERVALS = (
    "accuracy",
    "macro_f1",
    "map",
)  # the test metrics a run logs a 95% interval of: a classifier's, a detector's
GATE_FAILED = 7  # `cvops run training` registered the rerun, but it failed its gate: still a comparison


@dataclass
class Reproduction:
    original: VersionInfo
    rerun_model: str
    rerun: VersionInfo
    original_metrics: dict[str, float]  # the runs' MLflow metrics (test_accuracy, test_accuracy_ci95_low, ...)
    rerun_metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def headline(self) -> list[str]:
        """The metrics compared: those the original logged a 95% interval of (accuracy and macro-F1, or mAP)."""
        return [name for name in INTERVALS if f"test_{name}_ci95_low" in self.original_metrics]

    def interval(self, name: str) -> tuple[float, float]:
        nan = float("nan")
        return self.original_metrics.get(f"test_{name}_ci95_low", nan), self.original_metrics.get(
            f"test_{name}_ci95_high", nan
        )

    def metric(self, name: str) -> tuple[float, float]:
        """(original, rerun) test value of a headline metric."""
        nan = float("nan")
        return self.original_metrics.get(f"test_{name}", nan), self.rerun_metrics.get(f"test_{name}", nan)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """Side by side: data version, commit, headline metrics (with the original's interval), and a verdict."""
        rows = []
        for key in ("data_version", "git_commit"):
            original, rerun = self.original.tags.get(key, "?"), self.rerun.tags.get(key, "?")
            rows.append((key.replace("_", " "), original[:12], rerun[:12], "same" if original == rerun else "DIFFERS"))
        for name in self.headline:
            (original_value, rerun_value), (low, high) = self.metric(name), self.interval(name)
            inside = "inside" if low <= rerun_value <= high else "OUTSIDE"
            rows.append((name, f"{original_value:.4f} [{low:.3f}-{high:.3f}]", f"{rerun_value:.4f}", inside))
        return rows

    @property
    def failures(self) -> list[str]:
        found = []
        if self.original.tags.get("data_version") != self.rerun.tags.get("data_version"):
            found.append("the rerun trained on another data version")
        if not self.headline:
            found.append("the original run logged no test metric with an interval to compare")
        for name in self.headline:
            (_, rerun), (low, high) = self.metric(name), self.interval(name)
            if not low <= rerun <= high:  # False for a missing (nan) value too
                found.append(f"{name} {rerun:.4f} outside the original's 95% interval [{low:.4f}, {high:.4f}]")
        return found

    @property
    def reproduced(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        if not self.reproduced:
            return "not reproduced: " + "; ".join(self.failures)
        return (
            f"reproduced: same data version, {' and '.join(self.headline)} within the original's 95% intervals "
            f"(rerun: {self.rerun_model} version {self.rerun.version})"
        )


def reproduce_version(project: Project, version: str, keep: bool = False) -> Reproduction:
    """Train `version` again from its lineage in a temporary worktree, compare, and tag the original."""
    params = project.params()
    use_project_store(project, params.mlflow.experiment)
    registry = ModelRegistry.of(project, params.registry.model_name)
    original = registry.get(version)
    commit = _commit(project, original)
    inputs = _lineage_files(project, original, commit)
    notes = _notes(project, original, commit)
    use_project_store(project, params.mlflow.experiment + SUFFIX)  # its artifacts live in this checkout's store
    started = datetime.now(UTC)
    with _worktree(project.root, commit, keep) as tree:
        _run_in(tree, project, inputs, params)
    reruns = ModelRegistry.of(project, params.registry.model_name + SUFFIX)
    rerun = _rerun_version(reruns, started, DISTILLED_FROM_TAG in original.tags)
    result = Reproduction(original, reruns.name, rerun, _metrics(original.run_id), _metrics(rerun.run_id), notes)
    _tag_original(registry, result)
    return result


def _commit(project: Project, info: VersionInfo) -> str:
    commit = info.tags.get("git_commit", "")
    if not commit or commit == "unknown":
        raise LineageError(
            f"version {info.version} records no git commit (trained outside git): it cannot be reproduced"
        )
    if git(project.root, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        raise LineageError(
            f"version {info.version} was trained at commit {commit[:12]}, which this repository does not have: "
            "fetch it (`git fetch`) and run again"
        )
    return commit


@dataclass
class Inputs:
    """What the worktree gets besides the commit's files: the version's parameters and its dvc.lock."""

    params: dict[str, Any]
    dvc_lock: str


def _lineage_files(project: Project, info: VersionInfo, commit: str) -> Inputs:
    try:
        dvc_lock = mlflow.artifacts.load_text(f"runs:/{info.run_id}/{LINEAGE_DIR}/{DVC_LOCK}")
    except (MlflowException, OSError):  # a version trained before cvops logged its dvc.lock: the commit's
        dvc_lock = git(project.root, "show", f"{commit}:./{DVC_LOCK}") or ""
    data_version = info.tags.get("data_version", "")
    if not data_version or f"md5: {data_version}.dir" not in dvc_lock:
        raise LineageError(
            f"version {info.version}'s data version {data_version[:12] or '(none)'} is recorded neither with its run "
            f"nor in the dvc.lock of commit {commit[:12]}: its data cannot be restored"
        )
    return Inputs(_unflatten(run_params(info.run_id)), dvc_lock)


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, leaf = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return tree


def _notes(project: Project, info: VersionInfo, commit: str) -> list[str]:
    notes = []
    if overrides := json.loads(info.tags.get("overrides") or "{}"):
        shown = ", ".join(f"{key}={value}" for key, value in list(overrides.items())[:6])
        notes.append(
            f"version {info.version} ran with {len(overrides)} values that differ from commit {commit[:12]}'s "
            f"params.yaml (-S, an overlay or an edit), applied again: {shown}{' ...' if len(overrides) > 6 else ''}"
        )
    if info.tags.get("git_dirty") == "true":
        notes.append(
            f"version {info.version} was trained from a modified checkout (git_dirty): reproduced from its logged "
            f"parameters on commit {commit[:12]}; other uncommitted changes are not"
        )
    then = git(project.root, "show", f"{commit}:./requirements.lock")
    now = project.root / "requirements.lock"
    if then is not None and now.is_file():
        old, new = _pins(then), _pins(now.read_text())
        changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
        if changed:
            shown = ", ".join(f"{n} {old.get(n, '-')} -> {new.get(n, '-')}" for n in changed[:8])
            notes.append(
                f"requirements.lock differs from commit {commit[:12]} in {len(changed)} packages "
                f"({shown}{' ...' if len(changed) > 8 else ''}): the rerun uses today's"
            )
    return notes


def _pins(lock: str) -> dict[str, str]:
    pairs = (line.split("==", 1) for line in lock.splitlines() if "==" in line and not line.startswith("#"))
    return {name.strip().lower(): version.strip() for name, version in pairs}


@contextmanager
def _worktree(root: Path, commit: str, keep: bool) -> Iterator[Path]:
    scratch = Path(tempfile.mkdtemp(prefix="cvops-reproduce-"))
    tree = scratch / "checkout"
    if git(root, "worktree", "add", "--detach", str(tree), commit) is None:
        shutil.rmtree(scratch, ignore_errors=True)
        raise LineageError(f"could not check out commit {commit[:12]} in a worktree (`git worktree add` failed)")
    try:
        yield tree
    finally:
        if keep:
            print(f"worktree kept: {tree}", file=sys.stderr)
        else:
            git(root, "worktree", "remove", "--force", str(tree))
            shutil.rmtree(scratch, ignore_errors=True)


def _run_in(tree: Path, project: Project, inputs: Inputs, params: Params) -> None:
    """Write the version's inputs into the worktree, restore its data, and run the training pipeline there."""
    logged = inputs.params
    logged.setdefault("mlflow", {})["experiment"] = params.mlflow.experiment + SUFFIX
    logged.setdefault("registry", {})["model_name"] = params.registry.model_name + SUFFIX
    (tree / PARAMS_FILE).write_text(yaml.safe_dump(logged, sort_keys=False, allow_unicode=True), encoding="utf-8")
    env = {
        **{key: value for key, value in os.environ.items() if key != OVERLAY_ENV},  # the version's params alone
        ROOT_ENV: str(tree),
        MLFLOW_TRACKING_URI_ENV: project.tracking_uri,
        PYTHONPATH_ENV: os.pathsep.join(filter(None, [str(tree), os.environ.get(PYTHONPATH_ENV)])),
    }
    _cvops(tree, env, "init")
    (tree / DVC_LOCK).write_text(inputs.dvc_lock, encoding="utf-8")
    restore_from(Project(tree), project)
    _cvops(tree, env, "run", "training", ok=(0, GATE_FAILED))


def _cvops(tree: Path, env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> None:
    """`cvops ARGS` with the worktree's code (python -m, run from the worktree)."""
    done = subprocess.run(
        [sys.executable, "-m", "cvops.cli", *args], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode not in ok:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        reason = errors[-1] if errors else (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LineageError(f"`cvops {' '.join(args)}` failed in the reproduction worktree: {reason}")


def _rerun_version(registry: ModelRegistry, started: datetime, student: bool) -> VersionInfo:
    """The version the rerun registered: its distilled student when the original is a student (a run with
    distill.enabled registers both), else the teacher."""
    since = started.replace(microsecond=0)
    made = [
        info for info in registry.versions() if info.created >= since and (DISTILLED_FROM_TAG in info.tags) == student
    ]
    if not made:
        raise LineageError(f"the rerun registered no version of {registry.name}")
    return made[0]


def _metrics(run_id: str) -> dict[str, float]:
    return dict(mlflow.get_run(run_id).data.metrics)


def _tag_original(registry: ModelRegistry, result: Reproduction) -> None:
    tags = {
        "reproduced_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reproduced_by": f"{result.rerun_model} version {result.rerun.version}",
        "reproduce_run": result.rerun.run_id,
        "reproduce_verdict": "reproduced" if result.reproduced else "not reproduced",
    }
    for name in result.headline:
        original, rerun = result.metric(name)
        tags[f"reproduce_{name}_diff"] = f"{rerun - original:+.4f}"
    registry.tag(result.original.version, tags)
