"""Retention: what `cvops gc` deletes once it is older than the cut-off, or no longer needed.

Captured images and the inference log (with its feedback) by UTC day, monitoring and live-comparison reports
by age, bentos and BentoML models of versions no alias names, and DVC cache objects no git commit and not the
workspace references. Each kind is listed first; nothing is deleted without `apply`.
"""

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cvops.config import Params, Project
from cvops.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS
from cvops.serving.capture import CaptureStore
from cvops.serving.feedback import FEEDBACK_DIR
from cvops.serving.inference_log import FEEDBACK_TABLE, TABLE, connect


@dataclass
class Garbage:
    kind: str
    items: list[str]  # what goes, by name
    delete: Callable[[], object]


def _each(action: Callable[[Any], object], things: list[Any]) -> Callable[[], None]:
    def run() -> None:
        for thing in things:
            action(thing)

    return run


def _days(names: list[str], cutoff: datetime) -> list[str]:
    """The YYYY-MM-DD names wholly before the cut-off's day."""
    day = f"{cutoff:%Y-%m-%d}"
    return [name for name in names if re.fullmatch(r"\d{4}-\d{2}-\d{2}", name) and name < day]


def captures(project: Project, params: Params, cutoff: datetime) -> Garbage:
    store = CaptureStore(project.capture_store(params.serve))
    days = dict(store.days())
    old = _days(list(days), cutoff)
    items = [f"{day}/ ({len(days[day])} images)" for day in old]
    return Garbage("captured images", items, _each(store.delete_day, old))


def inference_log(project: Project, params: Params, cutoff: datetime) -> Garbage:
    target = project.inference_log(params.serve)
    if isinstance(target, str):
        return _log_table(target, cutoff)
    files = [path for folder in (target, target / FEEDBACK_DIR) if folder.is_dir() for path in folder.glob("*.jsonl")]
    old = [path for path in files if _days([path.stem], cutoff)]
    items = [str(path.relative_to(project.root)) for path in sorted(old)]
    return Garbage("inference log and feedback", items, _each(Path.unlink, old))


def _log_table(url: str, cutoff: datetime) -> Garbage:
    start = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    counts = {}
    connection = connect(url)
    try:
        with connection, connection.cursor() as cursor:
            for table in (TABLE, FEEDBACK_TABLE):
                cursor.execute(f"SELECT count(*) FROM {table} WHERE at < %s", (start,))
                counts[table] = int(cursor.fetchone()[0])
    finally:
        connection.close()

    def delete() -> None:
        connection = connect(url)
        try:
            with connection, connection.cursor() as cursor:
                for table in counts:
                    cursor.execute(f"DELETE FROM {table} WHERE at < %s", (start,))
        finally:
            connection.close()

    items = [f"{table}: {n} rows before {start:%Y-%m-%d}" for table, n in counts.items() if n]
    return Garbage("inference log and feedback", items, delete)


def reports(project: Project, params: Params, cutoff: datetime) -> Garbage:
    folders = [project.root / params.monitor.reports, project.reports_dir / "live"]
    old = sorted(
        run
        for folder in folders
        if folder.is_dir()
        for run in folder.iterdir()
        if run.is_dir() and datetime.fromtimestamp(run.stat().st_mtime, UTC) < cutoff
    )
    items = [str(run.relative_to(project.root)) for run in old]
    return Garbage("monitoring and live reports", items, _each(shutil.rmtree, old))


def bentos(project: Project, params: Params, kept: set[str]) -> Garbage:
    """Bentos and BentoML models of this registered model whose version no alias names (`kept`)."""
    import bentoml

    name = params.registry.model_name
    models = [model for model in bentoml.models.list() if model.info.labels.get("registered_model") == name]
    old = [str(model.tag) for model in models if model.info.labels.get("model_version") not in kept]
    built = [bento for bento in bentoml.bentos.list() if bento.tag.name == params.registry.bento_name]
    old_bentos = [str(bento.tag) for bento in built if bento.info.labels.get("model_version") not in kept]

    def delete() -> None:
        for tag in old_bentos:
            bentoml.bentos.delete(tag)
        for tag in old:
            bentoml.models.delete(tag)

    return Garbage("bentos and models of versions no alias names", old_bentos + old, delete)


def dvc_cache(project: Project) -> Garbage:
    """Cache objects neither the workspace nor any git commit references (`dvc gc --workspace --all-commits`)."""
    from cvops.data.versioning import collect_cache

    unused = collect_cache(project, dry=True)
    items = [f"{unused} cache objects no commit and not the workspace references"] if unused else []
    return Garbage("DVC cache", items, lambda: collect_cache(project, dry=False))


ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)  # the versions these name keep their bentos


def collect(project: Project, params: Params, cutoff: datetime, aliased: set[str]) -> list[Garbage]:
    """Everything past retention: files older than `cutoff`, bentos of versions not in `aliased`."""
    found = [
        captures(project, params, cutoff),
        inference_log(project, params, cutoff),
        reports(project, params, cutoff),
        bentos(project, params, aliased),
    ]
    if (project.root / ".dvc").is_dir():
        found.append(dvc_cache(project))
    return found
