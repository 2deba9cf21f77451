"""Labelling production images: a queue of captured images for people to label, and their labels into the data.

`labels queue` picks captured answers nobody has labelled yet: the least confident first, then spread over
the embedding space (k-center on the logged embeddings), plus a random share so the queue stays unbiased.
It writes a batch a person (or Label Studio) can work through. `labels import` takes the labels back (a CSV or
a Label Studio export), checks every line, copies the captured images into the production inbox with their
provenance, versions it with DVC, and re-runs the data stages: a new data version to retrain on.
"""

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
import pandas as pd

from cvops.config import Params, Project, ValidateParams
from cvops.data.manifest import MANIFEST, read_manifest, sha256_bytes
from cvops.data.production import COLUMNS, PRODUCTION, SOURCE_COLUMN, read_production
from cvops.data.validation import decode_fully
from cvops.env import DOCUMENT_ROOT_ENV
from cvops.errors import DataError, DataInvalidError, FeedbackError
from cvops.monitoring.reference import STATISTICS
from cvops.serving.capture import CAPTURE, CaptureStore
from cvops.serving.feedback import FeedbackStore, check_labels, read_labels_csv
from cvops.serving.inference_log import read_inference_log

Strategy = Literal["uncertainty", "diverse", "random", "mixed"]
STRATEGIES: tuple[str, ...] = ("uncertainty", "diverse", "random", "mixed")
MIXED = {"uncertainty": 0.4, "diverse": 0.4}  # of a mixed queue; the rest is drawn at random
TASKS, LABEL_STUDIO, LABEL_CONFIG = "tasks.csv", "label_studio.json", "label_config.xml"


def unlabelled_captures(project: Project, params: Params) -> pd.DataFrame:
    """Answers whose image was captured and that have no true label yet (no feedback, not in the data); only the
    log's days that may still have captures (serve.capture.retention_days) are read."""
    kept = datetime.now(UTC) - timedelta(days=params.serve.capture.retention_days + 1)
    rows = read_inference_log(project.inference_log(params.serve), since=kept, answers=True)
    if CAPTURE not in rows or rows[CAPTURE].isna().all():
        raise DataError(
            "no captured images: turn capture on (serve.capture.fraction or serve.capture.below_confidence,"
            " e.g. `cvops serve -S serve.capture.below_confidence=0.6`) and send traffic"
        )
    captured = rows[rows[CAPTURE].notna()].drop_duplicates("request_id", keep="last")
    known = set(FeedbackStore(project.inference_log(params.serve)).labels())
    known |= set(read_production(project.production_dir)["request_id"].astype(str))
    return captured[~captured["request_id"].isin(known)].reset_index(drop=True)


def _features(rows: pd.DataFrame) -> np.ndarray:
    """What `diverse` spreads over: the logged embeddings where every row has one of the same size, else the
    image statistics; standardised per column."""
    sizes = rows["embedding"].map(lambda e: len(e) if isinstance(e, list) else 0) if "embedding" in rows else None
    if sizes is not None and sizes.min() > 0 and sizes.nunique() == 1:
        values = np.array(rows["embedding"].tolist(), dtype=float)
    else:
        values = rows[[c for c in STATISTICS if c in rows]].to_numpy(dtype=float)
    return (values - values.mean(axis=0)) / (values.std(axis=0) + 1e-9)


def k_center(features: np.ndarray, k: int, chosen: list[int], rng: np.random.Generator) -> list[int]:
    """Greedy k-center: add, k times, the point farthest from everything chosen (a seeded random first point
    when nothing is chosen yet)."""
    picked = list(chosen)
    if not picked and k > 0 and len(features):
        picked.append(int(rng.integers(len(features))))
        k -= 1
    if not picked:
        return []
    distance = np.full(len(features), np.inf)
    for i in picked:
        distance = np.minimum(distance, np.linalg.norm(features - features[i], axis=1))
    for _ in range(min(k, len(features) - len(picked))):
        far = int(distance.argmax())
        picked.append(far)
        distance = np.minimum(distance, np.linalg.norm(features - features[far], axis=1))
    return picked


def pick(rows: pd.DataFrame, n: int, strategy: Strategy, seed: int) -> pd.DataFrame:
    """`n` rows of `rows` (all of them when fewer) chosen by `strategy`, in the order they were chosen."""
    rng = np.random.default_rng(seed)
    n = min(n, len(rows))
    by_score = list(np.argsort(rows["score"].to_numpy(dtype=float), kind="stable"))
    if strategy == "uncertainty":
        order = by_score[:n]
    elif strategy == "random":
        order = list(rng.permutation(len(rows))[:n])
    elif strategy == "diverse":
        order = k_center(_features(rows), n, [], rng)
    else:
        order = by_score[: round(n * MIXED["uncertainty"])]
        order = k_center(_features(rows), round(n * MIXED["diverse"]), order, rng)
        taken = set(order)
        rest = [i for i in rng.permutation(len(rows)) if i not in taken]
        order += rest[: n - len(order)]
    return rows.iloc[order[:n]].reset_index(drop=True)


def local_file_url(path: Path) -> str:
    """The URL Label Studio's local-files storage serves `path` at: relative to its document root
    (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, else /), URL-encoded."""
    root = Path(os.environ.get(DOCUMENT_ROOT_ENV) or "/").resolve()
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        raise DataError(
            f"{path} is outside Label Studio's document root {root} ({DOCUMENT_ROOT_ENV}): write the batch "
            "under it (--output), or set the variable to a folder above the batch"
        ) from None
    return f"/data/local-files/?d={quote(relative.as_posix())}"


def write_queue(chosen: pd.DataFrame, store: CaptureStore, out_dir: Path, classes: list[str]) -> Path:
    """A labelling batch: images/, tasks.csv (request_id, image, predicted, score), a Label Studio import file
    with the model's predictions as pre-annotations, and its labelling config. Written aside and renamed."""
    if out_dir.exists():
        raise DataError(f"{out_dir} exists: give a new --output folder")
    local_file_url(out_dir)  # outside the document root: refused before anything is written
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.writing-", dir=out_dir.parent))
    try:
        (staging / "images").mkdir()
        tasks, studio = [], []
        for row in chosen.to_dict("records"):
            image = f"images/{Path(str(row[CAPTURE])).name}"
            (staging / image).write_bytes(store.read(str(row[CAPTURE])))
            tasks.append(
                {"request_id": row["request_id"], "image": image, "predicted": row["label"], "score": row["score"]}
            )
            local = local_file_url(out_dir / image)
            studio.append(
                {
                    "data": {"image": local, "request_id": row["request_id"]},
                    "predictions": [
                        {
                            "model_version": str(row.get("model_version", "")),
                            "score": float(row["score"]),
                            "result": [
                                {
                                    "from_name": "label",
                                    "to_name": "image",
                                    "type": "choices",
                                    "value": {"choices": [row["label"]]},
                                }
                            ],
                        }
                    ],
                }
            )
        pd.DataFrame(tasks, columns=["request_id", "image", "predicted", "score"]).to_csv(staging / TASKS, index=False)
        (staging / LABEL_STUDIO).write_text(json.dumps(studio, indent=1))
        choices = "".join(f'<Choice value="{escape(name)}"/>' for name in classes)
        (staging / LABEL_CONFIG).write_text(
            f'<View><Image name="image" value="$image"/><Choices name="label" '
            f'toName="image" choice="single">{choices}</Choices></View>\n'
        )
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def queue_labels(project: Project, params: Params, n: int, strategy: Strategy, out_dir: Path) -> tuple[Path, int, int]:
    """`cvops labels queue`: the batch's folder, how many images it holds, and how many were waiting."""
    from cvops.data.prepare import load_dataset_ref

    waiting = unlabelled_captures(project, params)
    if waiting.empty:
        raise DataError("every captured image already has a label: capture more traffic first")
    chosen = pick(waiting, n, strategy, params.base.seed)
    classes = load_dataset_ref(project.prepared_dir).class_names
    folder = write_queue(chosen, CaptureStore(project.capture_store(params.serve)), out_dir, classes)
    return folder, len(chosen), len(waiting)


@dataclass
class Labelled:
    label: str
    labeller: str = ""


def read_labels(path: Path) -> dict[str, Labelled]:
    """A CSV (request_id,label[,labeller]) or a Label Studio JSON export of a `labels queue` batch."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        given = read_labels_csv(text, str(path))  # checks the header first
        labellers = {
            (row["request_id"] or "").strip(): (row.get("labeller") or "").strip()
            for row in csv.DictReader(io.StringIO(text))
        }
        return {i: Labelled(label, labellers.get(i, "")) for i, label in given.items()}
    try:
        tasks = json.loads(text)
    except ValueError as err:
        raise FeedbackError(f"{path} is not JSON ({err}): give Label Studio's JSON export, or a CSV") from err
    labels: dict[str, Labelled] = {}
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        if "data" not in task and task.get("request_id") and task.get("label"):  # the JSON_MIN export: flat rows
            labels[str(task["request_id"])] = Labelled(str(task["label"]), str(task.get("annotator") or ""))
            continue
        request_id = (task.get("data") or {}).get("request_id")
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled") and a.get("result")]
        if request_id and done:
            choices = done[-1]["result"][0].get("value", {}).get("choices") or [""]
            labels[str(request_id)] = Labelled(str(choices[0]), _annotator(done[-1]))
    if not labels:
        raise FeedbackError(
            f"{path} holds no completed annotation with a request_id: export the labelled tasks "
            "of a `cvops labels queue` batch from Label Studio as JSON"
        )
    return labels


def _annotator(annotation: dict[str, Any]) -> str:
    """Who labelled it, by email where the export says: `completed_by` is a user object in older exports and
    a number since Label Studio 1.2x, where `created_username` holds "email, id"."""
    who = annotation.get("completed_by")
    if isinstance(who, dict) and who.get("email"):
        return str(who["email"])
    named = str(annotation.get("created_username") or "")
    email = next((part.strip() for part in named.split(",") if "@" in part), "")
    return email or str(who or "")


def check_image(data: bytes, where: str, params: ValidateParams) -> None:
    """The per-file checks of `cvops data validate` (it decodes, its mode and size are allowed), on one image
    before it joins the data."""
    try:
        width, height, mode = decode_fully(data)
    except Exception as err:  # PIL raises many types for a bad file
        raise DataInvalidError(f"{where} does not decode ({type(err).__name__}): nothing imported") from err
    if mode not in params.allowed_modes or not params.image_fits(width, height):
        raise DataInvalidError(
            f"{where}: {width}x{height} {mode} fails validate.allowed_modes / min_size / max_size / "
            "max_aspect_ratio; nothing imported"
        )


@dataclass
class LabelImport:
    added: int
    duplicates: list[str]  # request ids whose image the data already holds
    stages: list[str]  # the DVC stages that ran
    data_version: str


def import_labels(project: Project, params: Params, path: Path) -> LabelImport:
    """`cvops labels import`: every line checked first (a known, captured request; a class of the data; an image
    that passes validation), duplicates of images already in the data named and skipped, the rest copied into
    data/production with their provenance, versioned (`dvc add`), and the data stages re-run."""
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version, inbox_ready, reproduce, track_inbox

    labels = read_labels(path)
    classes = load_dataset_ref(project.prepared_dir).class_names
    found = check_labels(project.inference_log(params.serve), {i: given.label for i, given in labels.items()}, classes)
    if uncaptured := [i for i in labels if not found[i].get(CAPTURE)]:
        more = f" (and {len(uncaptured) - 1} more)" if uncaptured[1:] else ""
        raise FeedbackError(
            f"request {uncaptured[0]} was never captured{more}: only captured images can join the "
            "data; give its label as feedback instead (`cvops feedback import`)"
        )
    store = CaptureStore(project.capture_store(params.serve))
    inbox_ready(project)
    inbox = read_production(project.production_dir)
    known = set(read_manifest(project.raw_dir)["sha256"]) | set(inbox["sha256"])
    rows, files, duplicates = [], {}, []
    for request_id, given in labels.items():
        key = str(found[request_id][CAPTURE])
        try:
            data = store.read(key)
        except FileNotFoundError as err:
            raise FeedbackError(
                f"the capture of request {request_id} ({key}) is gone (`cvops gc` deletes captures "
                "after serve.capture.retention_days): nothing imported"
            ) from err
        digest = sha256_bytes(data)
        if digest in known:
            duplicates.append(request_id)
            continue
        check_image(data, f"the capture of request {request_id}", params.validation)
        known.add(digest)
        relative = f"{given.label}/{Path(key).name}"
        files[relative] = data
        rows.append(
            {
                "path": relative,
                "label": given.label,
                "sha256": digest,
                SOURCE_COLUMN: PRODUCTION,
                "request_id": request_id,
                "captured_at": found[request_id].get("timestamp", ""),
                "labeller": given.labeller,
                "model_version": found[request_id].get("model_version", ""),
                "predicted": found[request_id].get("label", ""),
            }
        )
    if rows:
        _add_to_inbox(project.production_dir, pd.concat([inbox, pd.DataFrame(rows, columns=COLUMNS)]), files)
        track_inbox(project)
    stages = reproduce(project, "prepare") if rows else []
    return LabelImport(len(rows), duplicates, stages, data_version(project))


def _add_to_inbox(inbox: Path, manifest: pd.DataFrame, files: dict[str, bytes]) -> None:
    """The inbox with the new files and manifest, swapped in whole: a failure leaves the old one."""
    staging = Path(tempfile.mkdtemp(prefix=".production.adding-", dir=inbox.parent))
    try:
        shutil.copytree(inbox, staging, dirs_exist_ok=True)
        for relative, data in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_bytes(data)
        manifest.to_csv(staging / MANIFEST, index=False)
        retired = inbox.with_name(".production.retired")
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(inbox, retired)
        os.rename(staging, inbox)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def queued_at() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
