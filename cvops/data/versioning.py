"""DVC: running the data stages (DVC decides what is stale), the data version, status, push and pull."""

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from cvops.config import Project
from cvops.env import PATH_ENV, ROOT_ENV
from cvops.errors import DataError, DataInvalidError, LineageError, NotInitializedError

PREPARED_OUT = "data/prepared"
log = logging.getLogger(__name__)


@contextlib.contextmanager
def _dvc_repo(project: Project) -> Iterator[Any]:
    """A DVC repo opened from its root (DVC resolves stage paths against the working directory)."""
    if not (project.root / ".dvc").is_dir():
        raise NotInitializedError(f"{project.root} has no DVC repository: run `cvops init` first")
    if not (project.root / "dvc.yaml").is_file():
        raise NotInitializedError(f"{project.root} has no dvc.yaml: copy it from the cvops checkout")
    from dvc.repo import Repo

    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.WARNING)  # DVC narrates every stage on stdout at INFO
    try:
        with contextlib.chdir(project.root), Repo(str(project.root)) as repo:
            yield repo
    finally:
        dvc_logger.setLevel(level)


def reproduce(project: Project, target: str, *, force: bool = False) -> list[str]:
    """Run `target` and the stages it depends on, where stale; returns the stages DVC ran or restored.

    The stages call the `cvops` CLI of this interpreter. A stage that exits with the
    data-invalid code becomes a DataInvalidError; any other failure a DataError.
    """
    from dvc.exceptions import ReproductionError

    bin_dir = str(Path(sys.executable).parent)
    env = {PATH_ENV: f"{bin_dir}{os.pathsep}{os.environ.get(PATH_ENV, '')}", ROOT_ENV: str(project.root)}
    inbox_ready(project)
    with _dvc_repo(project) as repo:
        try:
            stages = repo.reproduce(target, force=force, single_item=force, run_env=env)
        except ReproductionError as err:
            cause = str(err.__cause__ or err)
            code = re.search(r"exited with (-?\d+)", cause)
            if code and int(code.group(1)) == DataInvalidError.exit_code:
                raise DataInvalidError("stopped before training: the data is invalid (summary above)") from err
            raise DataError(
                f"DVC stage failed ({err}): {cause}".splitlines()[0]
                + "; fix the cause and run again (`dvc checkout` restores the last good data)"
            ) from err
    ran = [stage.addressing for stage in stages]
    log.info("dvc repro %s: %s", target, ", ".join(ran) if ran else "nothing changed")
    return ran


def inbox_ready(project: Project) -> None:
    """The import stage's dependency data/production: an empty inbox until something is labelled; once
    `cvops labels import` has versioned it (data/production.dvc), it must be checked out, never replaced."""
    from cvops.data.production import ensure_inbox

    inbox, tracked = project.production_dir, project.production_dir.with_name("production.dvc")
    if tracked.is_file() and not inbox.is_dir():
        restore = f"`dvc checkout {tracked.relative_to(project.root)}` or `cvops data pull`"
        raise NotInitializedError(f"{inbox} is missing but {tracked.name} versions it: restore it with {restore}")
    ensure_inbox(inbox)


def track_inbox(project: Project) -> None:
    """`dvc add data/production`: its content into DVC's cache, its hash into data/production.dvc (for git)."""
    with _dvc_repo(project) as repo:
        repo.add(str(project.production_dir.relative_to(project.root)))


def collect_cache(project: Project, dry: bool) -> int:
    """`dvc gc --workspace --all-commits` (workspace only outside git): drop cache objects that neither the
    workspace nor any commit's dvc.lock or .dvc file references, so every committed data version stays. Returns
    how many objects it removed (with `dry`, would remove), and prints nothing of DVC's: a dry run logs every
    object as "Removing ..." and a warning for each commit without DVC files."""
    removed: list[int] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if match := re.match(r"Removed (\d+) objects", record.getMessage()):
                removed.append(int(match.group(1)))

    with _dvc_repo(project) as repo, contextlib.ExitStack() as silenced:
        for name in ("dvc", "dvc_data", "dvc_objects"):
            silenced.enter_context(_only(logging.getLogger(name), Count() if name == "dvc" else None))
        repo.gc(
            workspace=True,
            all_commits=repo.scm.root_dir is not None and (project.root / ".git").exists(),
            force=True,
            dry=dry,
        )
    return sum(removed)


@contextlib.contextmanager
def _only(logger: logging.Logger, handler: logging.Handler | None) -> Iterator[None]:
    """`logger`'s records go to `handler` alone (None: nowhere) for the block, at every level from INFO."""
    saved = logger.level, logger.propagate, logger.handlers[:]
    logger.setLevel(logging.INFO)
    logger.propagate, logger.handlers = False, [handler] if handler else []
    try:
        yield
    finally:
        logger.level, logger.propagate, logger.handlers = saved[0], saved[1], saved[2]


def data_version(project: Project) -> str:
    """The prepared data's content hash, as dvc.lock records it (the `data_version` lineage tag)."""
    lock_file = project.root / "dvc.lock"
    if not lock_file.is_file():
        raise NotInitializedError("no dvc.lock yet: run `cvops data prepare` or `dvc repro` first")
    lock = yaml.safe_load(lock_file.read_text()) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == PREPARED_OUT:
                return str(out["md5"]).removesuffix(".dir")
    raise NotInitializedError(f"dvc.lock records no {PREPARED_OUT}: run `dvc repro prepare`")


def workspace_status(project: Project) -> dict[str, Any]:
    """DVC's view of what differs from dvc.lock; empty when the workspace matches it."""
    with _dvc_repo(project) as repo:
        return dict(repo.status())


def configure_remote(project: Project, url: str, name: str = "local", endpoint: str | None = None) -> None:
    """Make `url` (a folder, relative to the checkout, or s3://...) the default DVC remote; `endpoint` is an
    S3-compatible server's URL (MinIO, the team stack's), None for AWS. S3 keys come from the AWS_* variables.

    Written to .dvc/config.local (not tracked): the resolved path is this machine's, and a tracked
    config changed by `cvops init` would mark every run's git state dirty.
    """
    if "://" not in url and not Path(url).is_absolute():
        url = str((project.root / url).resolve())
    with _dvc_repo(project) as repo, repo.config.edit(level="local") as config:
        config["remote"][name] = {"url": url, **({"endpointurl": endpoint} if endpoint else {})}
        config["core"]["remote"] = name
        config["core"]["analytics"] = False


def push(project: Project) -> int:
    """Upload the cached data to the default remote; returns how many objects were sent."""
    with _dvc_repo(project) as repo:
        return int(repo.push())


def pull(project: Project) -> dict[str, Any]:
    """Fetch and check out the data that dvc.lock names from the default remote."""
    with _dvc_repo(project) as repo:
        return dict(repo.pull())


def import_data(
    project: Project, source: str | None, path: Path | None, limit: int | None, annotations: Path | None = None
) -> list[tuple[str, Any]]:
    """`cvops data import`: record the source in params.yaml (data.*, and the `task` it serves), then run DVC's
    import stage, so DVC and the pipeline import the same thing. A path the source cannot read is refused
    before params.yaml changes. Returns the params.yaml values that changed."""
    from cvops.config import is_reference, source_task
    from cvops.data.sources import SOURCE_READERS
    from cvops.references import load_function
    from cvops.tasks.detection.boxes import DETECTION_READERS

    if source in ("folder", "fashion-mnist"):
        SOURCE_READERS[source](path, limit)
    if source and is_reference(source):
        load_function(source, "data.source")  # a reader that does not import is refused here
    if source in DETECTION_READERS:
        DETECTION_READERS[source](path, annotations)  # reads the annotations: a bad file is refused here
    chosen = {
        "task": source and source_task(source),
        "data.source": source,
        "data.path": path and str(path.expanduser().resolve()),
        "data.annotations": annotations and str(annotations.expanduser().resolve()),
        "data.limit_per_class": limit,
    }
    overrides = [f"{key}={value}" for key, value in chosen.items() if value is not None]
    if source:
        overrides += [f"{key}=null" for key in ("data.path", "data.annotations") if not chosen[key]]
    _, changed = project.set_params(overrides)
    reproduce(project, "import", force=True)
    return changed


class DataStatus(BaseModel):
    """`cvops data status`: the prepared data, its version, and whether the workspace matches dvc.lock."""

    data_version: str
    task: str
    image_size: int
    resize: str  # prepare.resize: how images that are not square became image_size x image_size
    unit: str  # what the counts count: images, or boxes for a detector's data
    classes: list[str]
    counts: dict[str, dict[str, int]]  # per split (train, val, test), per class
    production: int  # of the images, those labelled from production (`cvops labels import`)
    matches_dvc_lock: bool
    changes: dict[str, Any]  # DVC's view of what differs from dvc.lock, per stage; empty when it matches


def data_status(project: Project) -> DataStatus:
    from cvops.data.prepare import load_dataset_ref

    ref = load_dataset_ref(project.prepared_dir, data_version(project))
    changes = workspace_status(project)
    return DataStatus(
        data_version=ref.data_version,
        task=ref.task,
        image_size=ref.image_size,
        resize=ref.resize,
        unit=ref.unit,
        classes=ref.class_names,
        counts=ref.counts,
        production=sum(ref.sources.get("production", {}).values()),
        matches_dvc_lock=not changes,
        changes=changes,
    )


def restore_from(project: Project, source: Project) -> None:
    """Check out the data that `project`'s dvc.lock names, from `source`'s DVC cache, else pulled from
    `source`'s remote; a LineageError when neither has it."""
    from dvc.exceptions import DvcException

    with _dvc_repo(source) as repo:
        cache_dir = str(Path(repo.cache.local.path).parents[1])  # the cache's root, above files/md5
        remotes, default = dict(repo.config["remote"]), repo.config["core"].get("remote")
    with _dvc_repo(project) as repo, repo.config.edit(level="local") as config:
        config["cache"]["dir"] = cache_dir
        config["remote"].update(remotes)
        if default:
            config["core"]["remote"] = default
    with _dvc_repo(project) as repo:
        try:
            repo.checkout(force=True)
            return
        except DvcException as missing:
            log.info("not all in the DVC cache (%s): pulling from the remote", missing)
        try:
            repo.pull(force=True)
        except DvcException as err:
            raise LineageError(
                f"the data that dvc.lock names is in neither the DVC cache nor the remote ({err}): push it from "
                "a checkout that has it (`cvops data push`)".replace("\n", " ")
            ) from err
