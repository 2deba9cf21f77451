"""Labelling production images: a queue of captured images for people to label, and their labels into the data.

`labels queue` picks captured answers nobody has labelled yet: the least confident first, then spread over
the embedding space (k-center on the logged embeddings), plus a random share so the queue stays unbiased.
It writes a batch a person (or Label Studio) can work through. `labels import` takes the labels back (a CSV or
a Label Studio export), checks every line, copies the captured images into the production inbox with their
provenance, versions it with DVC, and re-runs the data stages: a new data version to retrain on.

`labels queue --strategy suspect` queues the data's own images whose label the data audit suspects, showing the
given and the suspected label; their reviewed labels come back through the same import as corrections (who,
when, the label before), recorded in the inbox: the import stage applies them, and each image keeps its split.
"""

import csv
import getpass
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import numpy as np
import pandas as pd

from cvops.config import Params, Project, ValidateParams
from cvops.data.manifest import BOXES, LABEL_BEFORE, MANIFEST, read_manifest, sha256_bytes
from cvops.data.production import (
    COLUMNS,
    CORRECTION_COLUMNS,
    CORRECTIONS,
    INBOX_BOX_COLUMNS,
    PRODUCTION,
    REVIEWED_AT,
    REVIEWED_BY,
    SOURCE_COLUMN,
    read_corrections,
    read_inbox_boxes,
    read_production,
)
from cvops.data.validation import decode_fully
from cvops.env import DOCUMENT_ROOT_ENV
from cvops.errors import DataError, DataInvalidError, FeedbackError
from cvops.monitoring.reference import STATISTICS
from cvops.serving.capture import CAPTURE, CaptureStore
from cvops.serving.feedback import (
    BOX_CSV_COLUMNS,
    FeedbackStore,
    check_box_feedback,
    check_labels,
    read_boxes_csv,
    read_labels_csv,
)
from cvops.serving.inference_log import LogTarget, read_inference_log
from cvops.tasks.detection.boxes import COORDS, IMAGES_DIR

if TYPE_CHECKING:
    from cvops.data.audit import LabelIssue

Strategy = Literal["uncertainty", "diverse", "random", "mixed", "suspect"]
STRATEGIES: tuple[str, ...] = ("uncertainty", "diverse", "random", "mixed", "suspect")
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


def write_queue(chosen: pd.DataFrame, store: CaptureStore, out_dir: Path, classes: list[str], truth: str) -> Path:
    """A labelling batch: images/, tasks.csv (request_id, image, predicted, score), a Label Studio import file
    with the model's predictions as pre-annotations (a detector's: its boxes, to move, fix or add to) and its
    labelling config (`truth`: a label, or boxes). Written aside and renamed."""
    staging = _staged(out_dir)
    try:
        tasks, studio = [], []
        for row in chosen.to_dict("records"):
            image = f"images/{Path(str(row[CAPTURE])).name}"
            (staging / image).write_bytes(store.read(str(row[CAPTURE])))
            tasks.append(
                {"request_id": row["request_id"], "image": image, "predicted": row["label"], "score": row["score"]}
            )
            local = local_file_url(out_dir / image)
            version = str(row.get("model_version", ""))
            prediction = (
                _box_prediction(row.get("detections"), int(row["width"]), int(row["height"]), version)
                if truth == "boxes"
                else _prediction(row["label"], float(row["score"]), version)
            )
            studio.append({"data": {"image": local, "request_id": row["request_id"]}, "predictions": [prediction]})
        pd.DataFrame(tasks, columns=["request_id", "image", "predicted", "score"]).to_csv(staging / TASKS, index=False)
        (staging / LABEL_STUDIO).write_text(json.dumps(studio, indent=1))
        controls = (
            f'<RectangleLabels name="label" toName="image">{_labels(classes)}</RectangleLabels>'
            if truth == "boxes"
            else f'<Choices name="label" toName="image" choice="single">{_choices(classes)}</Choices>'
        )
        (staging / LABEL_CONFIG).write_text(f'<View><Image name="image" value="$image"/>{controls}</View>\n')
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _staged(out_dir: Path) -> Path:
    """A folder beside `out_dir` to write a batch into, renamed to `out_dir` when whole (refused when it exists or
    lies outside Label Studio's document root)."""
    if out_dir.exists():
        raise DataError(f"{out_dir} exists: give a new --output folder")
    local_file_url(out_dir)  # outside the document root: refused before anything is written
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.writing-", dir=out_dir.parent))
    (staging / "images").mkdir()
    return staging


def _choices(classes: list[str]) -> str:
    return "".join(f'<Choice value="{escape(name)}"/>' for name in classes)


def _labels(classes: list[str]) -> str:
    return "".join(f'<Label value="{escape(name)}"/>' for name in classes)


def _box_prediction(detections: Any, width: int, height: int, model_version: str) -> dict[str, Any]:
    """A Label Studio pre-annotation drawing a detector's boxes, in percent of the image as Label Studio keeps
    them (none where the log holds no detections)."""
    found = list(detections) if isinstance(detections, list | tuple | np.ndarray) else []
    result: list[dict[str, Any]] = [
        {
            "from_name": "label",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": width,
            "original_height": height,
            "score": float(d["score"]),
            "value": {
                "x": 100 * x1 / width,
                "y": 100 * y1 / height,
                "width": 100 * (x2 - x1) / width,
                "height": 100 * (y2 - y1) / height,
                "rotation": 0,
                "rectanglelabels": [d["label"]],
            },
        }
        for d in found
        for x1, y1, x2, y2 in [list(d["box"])]
    ]
    score = max((float(d["score"]) for d in found), default=0.0)
    return {"model_version": model_version, "score": score, "result": result}


def _prediction(label: str, score: float, model_version: str = "") -> dict[str, Any]:
    """A Label Studio pre-annotation choosing `label`."""
    choice = {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}
    return {"model_version": model_version, "score": score, "result": [choice]}


def write_suspects(issues: list["LabelIssue"], raw_dir: Path, out_dir: Path, classes: list[str]) -> Path:
    """A review batch of the data's images whose label the audit suspects: images/, tasks.csv (path, image, given,
    suspected, quality), a Label Studio import file (the suspected label pre-selected, the given one shown) and
    its labelling config. Written aside and renamed."""
    staging = _staged(out_dir)
    try:
        tasks: list[dict[str, Any]] = []
        studio: list[dict[str, Any]] = []
        for issue in issues:
            image = f"images/{len(tasks):05d}-{Path(issue.path).name}"  # two classes may hold the same name
            shutil.copyfile(raw_dir / issue.path, staging / image)
            shown = {"path": issue.path, "given": issue.label, "suspected": issue.suspected}
            tasks.append(shown | {"image": image, "quality": issue.quality})
            data = shown | {"split": issue.split, "image": local_file_url(out_dir / image)}
            studio.append({"data": data, "predictions": [_prediction(issue.suspected, 1 - issue.quality, "audit")]})
        columns = ["path", "image", "given", "suspected", "quality"]
        pd.DataFrame(tasks, columns=columns).to_csv(staging / TASKS, index=False)
        (staging / LABEL_STUDIO).write_text(json.dumps(studio, indent=1))
        (staging / LABEL_CONFIG).write_text(
            '<View><Header value="given: $given, suspected: $suspected ($path)"/><Image name="image" '
            f'value="$image"/><Choices name="label" toName="image" choice="single">{_choices(classes)}'
            "</Choices></View>\n"
        )
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def queue_suspects(project: Project, n: int, out_dir: Path) -> tuple[Path, int, int]:
    """`cvops labels queue --strategy suspect`: the data audit's likely label errors (audited again where the data
    or audit.* changed; the ones people reviewed are not suspected again), likeliest first."""
    from cvops.data.audit_report import audit_project
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version, reproduce
    from cvops.tasks import task as task_of

    params = project.params(["audit.enabled=true"])
    if not task_of(params.task).label_audit:
        raise DataError(f"the data audit does not judge a {params.task} dataset's labels yet: nothing to suspect")
    reproduce(project, "prepare")
    dataset = load_dataset_ref(project.prepared_dir, data_version(project))
    found, _ = audit_project(project, dataset, params)
    if not found.label_issues:
        raise DataError(f"the data audit suspects no label ({found.summary()}): nothing to review")
    chosen = found.label_issues[:n]
    folder = write_suspects(chosen, project.raw_dir, out_dir, dataset.class_names)
    return folder, len(chosen), len(found.label_issues)


def queue_labels(project: Project, params: Params, n: int, strategy: Strategy, out_dir: Path) -> tuple[Path, int, int]:
    """`cvops labels queue`: the batch's folder, how many images it holds, and how many were waiting."""
    from cvops.data.prepare import load_dataset_ref
    from cvops.tasks import task as task_of

    if strategy == "suspect":
        return queue_suspects(project, n, out_dir)
    waiting = unlabelled_captures(project, params)
    if waiting.empty:
        raise DataError("every captured image already has a label: capture more traffic first")
    chosen = pick(waiting, n, strategy, params.base.seed)
    dataset = load_dataset_ref(project.prepared_dir)
    store = CaptureStore(project.capture_store(params.serve))
    folder = write_queue(chosen, store, out_dir, dataset.class_names, task_of(dataset.task).truth)
    return folder, len(chosen), len(waiting)


@dataclass
class Labelled:
    label: str  # "" for a detector's image
    labeller: str = ""
    at: str = ""  # when it was labelled, where the file says
    boxes: list[dict[str, Any]] | None = None  # a detector's image's true boxes ({"box": [x1, y1, x2, y2], "label"})


Key = Literal["request_id", "path"]  # what a batch's labels are keyed by: captured requests, or the data's images


def read_labels(path: Path) -> tuple[Key, dict[str, Labelled]]:
    """A CSV (request_id,label[,labeller], or path,label[,labeller] for a suspect batch) or a Label Studio JSON
    export of a `labels queue` batch; which key its labels have."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        header = next(csv.reader(io.StringIO(text)), [])
        if set(BOX_CSV_COLUMNS) <= set(header):  # a detector's boxes, a line per box
            return "request_id", {i: Labelled("", boxes=boxes) for i, boxes in read_boxes_csv(text, str(path)).items()}
        key: Key = "path" if "path" in header and "request_id" not in header else "request_id"
        given = read_labels_csv(text, str(path), key)  # checks the header first
        labellers = {
            (row[key] or "").strip(): (row.get("labeller") or "").strip() for row in csv.DictReader(io.StringIO(text))
        }
        return key, {i: Labelled(label, labellers.get(i, "")) for i, label in given.items()}
    try:
        tasks = json.loads(text)
    except ValueError as err:
        raise FeedbackError(f"{path} is not JSON ({err}): give Label Studio's JSON export, or a CSV") from err
    labels: dict[Key, dict[str, Labelled]] = {"request_id": {}, "path": {}}
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        flat: Key = "request_id" if task.get("request_id") else "path"
        if "data" not in task and task.get(flat) and task.get("label"):  # the JSON_MIN export: flat rows
            at = str(task.get("updated_at") or task.get("created_at") or "")
            labels[flat][str(task[flat])] = Labelled(str(task["label"]), str(task.get("annotator") or ""), at)
            continue
        data = task.get("data") or {}
        found: Key = "request_id" if data.get("request_id") else "path"
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if data.get(found) and done:
            labels[found][str(data[found])] = _annotated(done[-1], f"{path}: task {task.get('id', data[found])}")
    labels = {
        key: {i: given for i, given in found.items() if given.label or given.boxes is not None}
        for key, found in labels.items()
    }
    if labels["request_id"] and labels["path"]:
        raise FeedbackError(f"{path} mixes captured requests and the data's images: export each batch on its own")
    kind: Key = "path" if labels["path"] else "request_id"
    if not labels[kind]:
        raise FeedbackError(
            f"{path} holds no completed annotation with a request_id or a path: export the labelled tasks "
            "of a `cvops labels queue` batch from Label Studio as JSON"
        )
    return kind, labels[kind]


def _annotated(annotation: dict[str, Any], where: str) -> Labelled:
    """An annotation of a Label Studio export: its chosen label, or a detector's boxes (rectangles in percent of
    the image, turned into its pixels; none drawn: no object), who made it and when."""
    results = annotation.get("result") or []
    choices = next((r["value"]["choices"] for r in results if r.get("value", {}).get("choices")), [""])
    rectangles = [r for r in results if r.get("type") == "rectanglelabels"]
    boxes = [_pixels(r, where) for r in rectangles] if rectangles or not results else None
    at = str(annotation.get("updated_at") or annotation.get("created_at") or "")
    return Labelled(str(choices[0]) if boxes is None else "", _annotator(annotation), at, boxes)


def _pixels(result: dict[str, Any], where: str) -> dict[str, Any]:
    """A Label Studio rectangle (x, y, width, height in percent of the original image) in the image's pixels."""
    value, width, height = result.get("value") or {}, result.get("original_width"), result.get("original_height")
    if not width or not height or value.get("rotation"):
        raise FeedbackError(f"{where}: a rectangle without the image's size, or rotated: export it again as JSON")
    x, y = value["x"] * width / 100, value["y"] * height / 100
    box = [x, y, x + value["width"] * width / 100, y + value["height"] * height / 100]
    return {"box": [round(v, 2) for v in box], "label": (value.get("rectanglelabels") or [""])[0]}


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
    corrected: int = 0  # of the data's images, labels people changed
    confirmed: int = 0  # and labels they kept


def _checked(
    log: LogTarget, labels: dict[str, Labelled], classes: list[str], boxed: bool
) -> tuple[dict[str, Labelled], dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The labels to import (a task left without a choice dropped), each request's log row, and a detector's
    checked boxes: every request known and captured, every label a class, every box inside its image."""
    if boxed:
        if unboxed := [i for i, given in labels.items() if given.boxes is None]:
            raise FeedbackError(f"request {unboxed[0]} has a label but no boxes: a detector's data takes boxes")
        found, checked = check_box_feedback(log, {i: given.boxes for i, given in labels.items()}, classes)
    else:
        labels = {i: given for i, given in labels.items() if given.label}
        found, checked = check_labels(log, {i: given.label for i, given in labels.items()}, classes), {}
    if uncaptured := [i for i in labels if not found[i].get(CAPTURE)]:
        more = f" (and {len(uncaptured) - 1} more)" if uncaptured[1:] else ""
        raise FeedbackError(
            f"request {uncaptured[0]} was never captured{more}: only captured images can join the "
            "data; give its label as feedback instead (`cvops feedback import`)"
        )
    return labels, found, checked


def _captured(store: CaptureStore, request_id: str, key: str) -> bytes:
    try:
        return store.read(key)
    except FileNotFoundError as err:
        raise FeedbackError(
            f"the capture of request {request_id} ({key}) is gone (`cvops gc` deletes captures "
            "after serve.capture.retention_days): nothing imported"
        ) from err


def import_labels(project: Project, params: Params, path: Path) -> LabelImport:
    """`cvops labels import`: every line checked first (`_checked`; an image that passes validation), duplicates
    of images already in the data named and skipped, the rest copied into data/production with their provenance
    (a detector's with their boxes), versioned (`dvc add`), and the data stages re-run. A suspect batch's labels
    (keyed by the data's paths) are reviews of the data's own images: `correct_labels`."""
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version, inbox_ready, reproduce, track_inbox
    from cvops.tasks import task as task_of

    kind, labels = read_labels(path)
    if kind == "path":
        return correct_labels(project, labels)
    dataset = load_dataset_ref(project.prepared_dir)
    boxed = task_of(dataset.task).truth == "boxes"
    labels, found, checked = _checked(project.inference_log(params.serve), labels, dataset.class_names, boxed)
    store = CaptureStore(project.capture_store(params.serve))
    inbox_ready(project)
    inbox, inbox_boxes = read_production(project.production_dir), read_inbox_boxes(project.production_dir)
    known = set(read_manifest(project.raw_dir)["sha256"]) | set(inbox["sha256"])
    rows, boxes, files, duplicates = [], [], {}, []
    for request_id, given in labels.items():
        answer = found[request_id]
        data = _captured(store, request_id, str(answer[CAPTURE]))
        if (digest := sha256_bytes(data)) in known:
            duplicates.append(request_id)
            continue
        check_image(data, f"the capture of request {request_id}", params.validation)
        known.add(digest)
        relative = f"{IMAGES_DIR if boxed else given.label}/{Path(str(answer[CAPTURE])).name}"
        files[relative] = data
        boxes += [
            {"image": relative, "label": b["label"], **dict(zip(COORDS, b["box"], strict=True))}
            for b in checked.get(request_id, [])
        ]
        provenance = {"request_id": request_id, "captured_at": answer.get("timestamp", ""), "labeller": given.labeller}
        answered = {"model_version": answer.get("model_version", ""), "predicted": answer.get("label", "")}
        rows.append(
            {"path": relative, "label": given.label or None, "sha256": digest, SOURCE_COLUMN: PRODUCTION}
            | provenance
            | answered
        )
    if rows:
        files[MANIFEST] = pd.concat([inbox, pd.DataFrame(rows, columns=COLUMNS)]).to_csv(index=False).encode()
        if boxed:
            added = pd.DataFrame(boxes, columns=INBOX_BOX_COLUMNS)
            files[BOXES] = pd.concat([inbox_boxes, added]).to_csv(index=False).encode()
        _add_to_inbox(project.production_dir, files)
        track_inbox(project)
    stages = reproduce(project, "prepare") if rows else []
    return LabelImport(len(rows), duplicates, stages, data_version(project))


def correct_labels(project: Project, labels: dict[str, Labelled]) -> LabelImport:
    """Reviews of the data's own images (a suspect batch's labels, keyed by their paths in data/raw): every line
    checked first (an image of the data, a class of the data), then each recorded in the inbox's corrections with
    who reviewed it, when, and the label it had; versioned (`dvc add`), and the data stages re-run, which apply
    them. A label kept as it was is recorded too: the audit does not suspect it again."""
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version, inbox_ready, reproduce, track_inbox
    from cvops.tasks import task as task_of

    dataset = load_dataset_ref(project.prepared_dir)
    if not task_of(dataset.task).label_audit:
        raise FeedbackError(f"label corrections are for a classifier's images; this project's task is {dataset.task}")
    raw = read_manifest(project.raw_dir).set_index("path")
    labels = {path: given for path, given in labels.items() if given.label}  # a task left without a choice
    if unknown := [p for p in labels if p not in raw.index]:
        more = f" (and {len(unknown) - 1} more)" if unknown[1:] else ""
        raise FeedbackError(
            f"{unknown[0]}{more} is not an image of data/raw: review a batch of this data version "
            "(`cvops labels queue --strategy suspect`); nothing imported"
        )
    if wrong := [(p, given.label) for p, given in labels.items() if given.label not in dataset.class_names]:
        raise FeedbackError(
            f"unknown label {wrong[0][1]!r} for {wrong[0][0]}: the classes are {', '.join(dataset.class_names)}; "
            "nothing imported"
        )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = [
        {
            "sha256": raw.at[p, "sha256"],
            "path": p,
            "label": given.label,
            LABEL_BEFORE: raw.at[p, "label"],
            REVIEWED_BY: given.labeller or getpass.getuser(),  # a CSV without a labeller: who imports it
            REVIEWED_AT: given.at or now,
        }
        for p, given in labels.items()
    ]
    inbox_ready(project)
    history = pd.concat([read_corrections(project.production_dir), pd.DataFrame(rows, columns=CORRECTION_COLUMNS)])
    _add_to_inbox(project.production_dir, {CORRECTIONS: history.to_csv(index=False).encode()})
    track_inbox(project)
    stages = reproduce(project, "prepare")
    changed = sum(row["label"] != row[LABEL_BEFORE] for row in rows)
    return LabelImport(0, [], stages, data_version(project), corrected=changed, confirmed=len(rows) - changed)


def _add_to_inbox(inbox: Path, files: dict[str, bytes]) -> None:
    """The inbox with `files` (relative paths: new images, its manifest, its corrections) written, swapped in
    whole: a failure leaves the old one."""
    staging = Path(tempfile.mkdtemp(prefix=".production.adding-", dir=inbox.parent))
    try:
        shutil.copytree(inbox, staging, dirs_exist_ok=True)
        for relative, data in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_bytes(data)
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
