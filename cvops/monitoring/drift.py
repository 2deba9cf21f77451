"""Drift of served traffic against a model version's reference, tested with Evidently.

Three groups of columns: the image statistics (every logged row), the projected embedding and the
predicted label (rows the reference's version answered: another version embeds differently), and for a
detector its answer per image too (boxes, their mean area, aspect and score) and the class of every box it
found (the class mix, `box_label`: a row per box, beside the image rows, empty in every other column). Each
column gets a two-sample test, Kolmogorov-Smirnov for numbers and chi-square for the labels, and drifts
at p < false_alarm_rate / m for m tested columns (Bonferroni), so a window of unchanged traffic raises
an alarm with probability at most false_alarm_rate.
"""

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import pandas as pd
from pydantic import BaseModel

from cvops.config import MonitorParams
from cvops.evaluation.reports import metric_name
from cvops.export.onnx_model import read_preprocessing
from cvops.monitoring.quality import LiveQuality
from cvops.monitoring.reference import BOX_COLUMNS, BOX_LABELS, EMBEDDING_PREFIX, PREDICTION, STATISTICS, load_reference
from cvops.registry.artifacts import reference_dir, resolve
from cvops.registry.model_registry import CHAMPION, ModelRegistry
from cvops.tasks import task

Status = Literal["drift", "no_drift", "not_enough_data"]
Group = Literal["statistics", "embedding", "prediction"]
HTML_FILE, JSON_FILE, VERDICT_FILE = "drift_report.html", "drift_report.json", "verdict.json"
BOX_LABEL = "box_label"  # a detector's class mix: the class of each box, one test row per box
LABELS = (PREDICTION, BOX_LABEL)  # the categorical columns


class ColumnDrift(BaseModel):
    column: str
    group: Group
    method: str
    p_value: float
    drifted: bool


class DriftVerdict(BaseModel):
    status: Status
    model_version: str
    rows: int  # in the window
    model_rows: int  # of them answered by model_version (tested for embedding and prediction drift)
    reference_rows: int
    window_start: datetime | None
    window_end: datetime | None
    threshold: float  # per-column p-value below which a column drifts
    columns: list[ColumnDrift] = []
    notes: list[str] = []
    report_dir: str | None = None
    champion_approved: bool = True  # False: the champion was set outside cvops, with no approval record
    quality: LiveQuality | None = None  # live accuracy on the window's answers with a true label

    @property
    def degraded(self) -> bool:
        return self.quality is not None and self.quality.status == "low"

    @property
    def alarm(self) -> bool:
        """Drift, or live accuracy below the test accuracy: either opens an episode and may retrain."""
        return self.status == "drift" or self.degraded

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.drifted]

    @property
    def reason(self) -> str:
        if self.degraded:
            assert self.quality is not None
            return self.quality.reason + (f"; {self.drift_reason}" if self.status == "drift" else "")
        return self.drift_reason

    @property
    def drift_reason(self) -> str:
        if self.status == "not_enough_data":
            return self.notes[0] if self.notes else "not enough data"
        if self.status == "no_drift":
            return f"no column drifted ({len(self.columns)} tested at p < {self.threshold:.2g})"
        worst = sorted(self.drifted, key=lambda c: c.p_value)
        return (
            "drift in "
            + ", ".join(f"{c.column} (p={c.p_value:.1e})" for c in worst[:5])
            + (f" and {len(worst) - 5} more" if len(worst) > 5 else "")
        )

    def table(self) -> str:
        lines = [f"{'column':<12} {'group':<11} {'test':<10} {'p-value':>9}  drift"]
        for c in self.columns:
            lines.append(
                f"{c.column:<12} {c.group:<11} {c.method:<10} {c.p_value:>9.2g}  {'YES' if c.drifted else '-'}"
            )
        return "\n".join(lines + [f"  {note}" for note in self.notes])


def window_table(rows: pd.DataFrame, version: str, projection: str) -> tuple[pd.DataFrame, int, str | None]:
    """Inference-log rows as test columns. Embeddings and labels are kept only for the rows `version`
    answered with the reference's `projection`; returns the table, how many rows carry them, and a note
    when rows of `version` had to be left out."""
    table = pd.DataFrame({c: pd.to_numeric(rows[c], errors="coerce") for c in STATISTICS if c in rows})
    answered = np.zeros(len(rows), dtype=bool)
    if "model_version" in rows:
        answered = (rows["model_version"].astype(str) == version).to_numpy()
    ours = answered & (rows["projection"] == projection).to_numpy() if "projection" in rows else answered & False
    if ours.any():
        embeddings = np.stack([np.asarray(e, dtype=float) for e in rows["embedding"][ours]])  # lists or arrays
        columns = [f"{EMBEDDING_PREFIX}{i}" for i in range(embeddings.shape[1])]
        table[columns] = np.nan
        table.loc[ours, columns] = embeddings
    if PREDICTION in rows:
        table[PREDICTION] = rows[PREDICTION].where(ours, None)
    for column in (c for c in BOX_COLUMNS if c in rows):  # a detector's answers: of its own rows only, as labels
        table[column] = pd.to_numeric(rows[column], errors="coerce").where(ours)
    if BOX_LABELS in rows:
        table = with_box_labels(table, rows[BOX_LABELS][ours])
    note = None
    if answered.sum() > ours.sum():
        note = (
            f"{answered.sum() - ours.sum()} rows of version {version} carry no embedding made with its reference's "
            f"projection {projection} (logged by a service started before `cvops quantize {version}`, "
            "or by an ONNX file without an embedding output): left out of the embedding and prediction tests"
        )
    return table, int(ours.sum()), note


def with_box_labels(table: pd.DataFrame, found: pd.Series) -> pd.DataFrame:
    """`table` with a row per box of `found` (each image's box classes) holding its class in BOX_LABEL, empty in
    every other column: the tests leave empty values out, so the image columns are tested as before."""
    boxes = [label for labels in found if isinstance(labels, list | np.ndarray) for label in labels]
    return pd.concat([table, pd.DataFrame({BOX_LABEL: pd.Series(boxes, dtype=object)})], ignore_index=True)


def _group(column: str) -> Group:
    if column.startswith(EMBEDDING_PREFIX):
        return "embedding"
    return "prediction" if column in LABELS or column in BOX_COLUMNS else "statistics"


def detect_drift(
    reference: pd.DataFrame,
    projection: str,
    rows: pd.DataFrame,
    version: str,
    params: MonitorParams,
    out_dir: Path,
    quality: LiveQuality | None = None,
    champion_approved: bool = True,
) -> DriftVerdict:
    """Test the window `rows` against the `reference` of `version` (embeddings reduced by `projection`);
    the Evidently report and the verdict (with `quality` and `champion_approved` as given) go to `out_dir`."""
    current, model_rows, note = window_table(rows, version, projection)
    start, end = _window_span(rows)
    verdict = DriftVerdict(
        status="not_enough_data",
        model_version=version,
        rows=len(rows),
        model_rows=model_rows,
        reference_rows=len(reference),
        window_start=start,
        window_end=end,
        threshold=params.false_alarm_rate,
        quality=quality,
        champion_approved=champion_approved,
    )
    if len(rows) < params.min_samples:
        verdict.notes.append(
            f"{len(rows)} logged predictions in the window, monitor.min_samples is "
            f"{params.min_samples}; send more traffic or widen the window (--window, --since)"
        )
        return _save(verdict, None, out_dir)
    answered_enough = model_rows >= params.min_samples
    columns, reference = _tested_columns(current, reference, answered_enough)
    if not answered_enough:
        verdict.notes.append(
            f"embedding and prediction not tested: {model_rows} rows answered by version {version} "
            f"(< monitor.min_samples {params.min_samples})"
        )
    if note:
        verdict.notes.append(note)
    threshold = params.false_alarm_rate / len(columns)
    snapshot, drifts = _test_columns(current, reference, columns, threshold)
    verdict.columns = drifts
    verdict.threshold = threshold
    verdict.status = "drift" if verdict.drifted else "no_drift"
    return _save(verdict, snapshot, out_dir)


def _window_span(rows: pd.DataFrame) -> tuple[datetime | None, datetime | None]:
    """The first and last timestamp of the window's rows; None without any."""
    if "timestamp" not in rows or not len(rows):
        return None, None
    stamps = pd.to_datetime(rows["timestamp"], utc=True)
    return stamps.min(), stamps.max()


def _tested_columns(
    current: pd.DataFrame, reference: pd.DataFrame, answered_enough: bool
) -> tuple[list[str], pd.DataFrame]:
    """The columns both tables have to test: the image statistics, and when enough of the window's rows were
    answered by the reference's version, its embedding, prediction and a detector's answers too; returned with
    the reference to test them against (a row per box added when the class mix is tested)."""
    columns = [c for c in STATISTICS if c in current and c in reference]
    if not answered_enough:
        return columns, reference
    columns += [c for c in reference.columns if c.startswith(EMBEDDING_PREFIX) and c in current]
    columns += [PREDICTION] if PREDICTION in current else []
    columns += [c for c in BOX_COLUMNS if c in current and c in reference]
    if BOX_LABEL in current and current[BOX_LABEL].notna().any() and BOX_LABELS in reference:
        reference = with_box_labels(reference, reference[BOX_LABELS])
        columns += [BOX_LABEL]
    return columns, reference


def _test_columns(
    current: pd.DataFrame, reference: pd.DataFrame, columns: list[str], threshold: float
) -> tuple[object, list[ColumnDrift]]:
    """Evidently's two-sample test of each column, chi-square for the labels and Kolmogorov-Smirnov for numbers:
    its report, and each column's p-value and whether it drifted (p < `threshold`)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    numerical = [c for c in columns if c not in LABELS]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=[c for c in columns if c in LABELS])
    tests = {c: "chisquare" if c in LABELS else "ks" for c in columns}
    metrics = [ValueDrift(column=c, method=method, threshold=threshold) for c, method in tests.items()]
    with np.errstate(divide="ignore"):  # a label the reference never had: chi-square's p is 0 (drift), no warning
        snapshot = Report(metrics).run(
            Dataset.from_pandas(current[columns], data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    p_values = [float(m["value"]) for m in snapshot.dict()["metrics"]]
    drifts = [
        ColumnDrift(column=c, group=_group(c), method=tests[c], p_value=p, drifted=p < threshold)
        for c, p in zip(columns, p_values, strict=True)
    ]
    return snapshot, drifts


def _save(verdict: DriftVerdict, snapshot: object, out_dir: Path) -> DriftVerdict:
    """The report folder appears complete or not at all."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if snapshot is not None:
        snapshot.save_html(str(partial / HTML_FILE))  # type: ignore[attr-defined]
        snapshot.save_json(str(partial / JSON_FILE))  # type: ignore[attr-defined]
    verdict.report_dir = str(out_dir)
    _write_verdict(verdict, partial)
    os.replace(partial, out_dir)
    return verdict


def _write_verdict(verdict: DriftVerdict, folder: Path) -> None:
    partial = folder / f"{VERDICT_FILE}.partial"
    partial.write_text(json.dumps(verdict.model_dump(mode="json"), indent=2))
    os.replace(partial, folder / VERDICT_FILE)


def check_champion(
    registry: ModelRegistry, cache_dir: Path, window: pd.DataFrame, params: MonitorParams, reports_dir: Path, seed: int
) -> DriftVerdict:
    """Test `window` against the champion's reference; the verdict, with its reports in a new folder under
    `reports_dir` and on the active MLflow run."""
    served = resolve(registry, CHAMPION, cache_dir)
    reference, projection = load_reference(reference_dir(served, cache_dir))
    out_dir = reports_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    info = registry.get(served.version)
    kind = read_preprocessing(Path(served.onnx_path)).task
    quality = task(kind).monitor.live_quality(window, served.version, info.tags, params, seed)
    verdict = detect_drift(
        reference,
        projection.fingerprint,
        window,
        served.version,
        params,
        out_dir,
        quality,
        champion_approved=not registry.outside_cvops(info),
    )  # False: alias moved in MLflow itself
    mlflow.set_tags(
        {
            "pipeline": "monitoring",
            "drift": verdict.status,
            "model_version": served.version,
            "live_quality": quality.status,
            "champion_approved": str(verdict.champion_approved).lower(),
        }
    )
    mlflow.log_metrics({"window_rows": verdict.rows, "drifted_columns": len(verdict.drifted)})
    live = {metric_name(name): value for name, value in quality.metrics().items()}
    mlflow.log_metrics({f"p_{c.column}": c.p_value for c in verdict.columns} | live)
    mlflow.log_artifacts(str(out_dir), artifact_path="drift")
    return verdict
