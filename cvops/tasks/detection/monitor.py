"""A detector's monitoring: its reference (image statistics of the train and validation splits, the projected
embeddings, and per validation image the served answer's summary, `BOX_COLUMNS`, `BOX_LABELS`, as
cvops/monitoring/reference.py stores it), and its live mAP on the answers whose true boxes came back."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvops.config import MonitorParams
from cvops.console import progress
from cvops.data.prepare import DatasetRef, load_split_images
from cvops.data.preprocess import model_inputs
from cvops.export.onnx_model import detect_outputs, preprocessing_of, session
from cvops.monitoring.quality import LiveQuality
from cvops.monitoring.reference import BOX_COLUMNS, BOX_LABELS, reference_table
from cvops.serving.feedback import TRUE_BOXES
from cvops.serving.projection import Projection
from cvops.tasks.detection.matching import bootstrap_map, match_image, mean_ap
from cvops.tasks.detection.postprocess import PostProcess
from cvops.tasks.detection.predictor import DetectionPredictor, box_summary


def _embeddings(onnx_path: Path, images: np.ndarray, desc: str, batch_size: int = 64) -> np.ndarray:
    onnx = session(onnx_path)
    pre = preprocessing_of(onnx, onnx_path)
    return np.concatenate(
        [
            detect_outputs(onnx, model_inputs(images[i : i + batch_size], pre.mean, pre.std))[1]
            for i in progress(range(0, len(images), batch_size), desc, unit="batch")
        ]
    )


def reference_view(
    onnx_path: Path, ref: DatasetRef, dims: int, post: PostProcess
) -> tuple[pd.DataFrame, Projection, int]:
    """A detector's reference table: statistics, projected embeddings, and per validation image the served
    answer's summary (box_summary, with the served post-processing `post`): the best box's class as the label,
    every box's class; its projection, and how many rows hold the model's view."""
    train_images, train_rows = load_split_images(ref, "train")
    val_images, val_rows = load_split_images(ref, "val")
    projection = Projection.fit(_embeddings(onnx_path, train_images, "reference (train)"), dims)
    predictor = DetectionPredictor(onnx_path, "", "", "", max_batch=64, post=post)
    summaries = []
    for start in progress(range(0, len(val_images), 64), "reference (val)", unit="batch"):
        outputs = predictor.predict(val_images[start : start + 64])
        for i, (width, height) in enumerate(
            zip(val_rows["width"][start : start + 64], val_rows["height"][start : start + 64], strict=True)
        ):
            found = predictor.detections(tuple(o[i] for o in outputs[:3]), int(width), int(height))
            summaries.append(box_summary(found, int(width), int(height)))
    answers = pd.DataFrame(summaries)
    val_embeddings = projection.apply(_embeddings(onnx_path, val_images, "reference (embeddings)"))
    val = reference_table(val_images, val_rows, answers["label"].tolist(), val_embeddings)
    val[list(BOX_COLUMNS)] = answers[list(BOX_COLUMNS)].to_numpy(dtype=float)
    val[BOX_LABELS] = answers[BOX_LABELS]
    table = pd.concat(
        [reference_table(train_images, train_rows).assign(split="train"), val.assign(split="val")], ignore_index=True
    )
    return table, projection, len(val_images)


LIVE_RESAMPLES = 500  # of the bootstrap interval of live mAP


def _listed(value: Any) -> list[Any] | None:
    """A logged list (of detections, of true boxes) as a list, whether it came from JSON or through a parquet
    file (an array); None for a row without one."""
    return list(value) if isinstance(value, list | tuple | np.ndarray) else None


def _box_arrays(boxes: list[dict[str, Any]], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    coords = np.array([list(box["box"]) for box in boxes], dtype=np.float64).reshape(-1, 4)
    return coords, np.array([index[box["label"]] for box in boxes], dtype=np.int64)


def live_quality(
    rows: pd.DataFrame, version: str, tags: dict[str, str], params: MonitorParams, seed: int
) -> LiveQuality:
    """A detector's live mAP@[.5:.95]: `version`'s logged detections against the true boxes that came back, with
    a seeded 95% bootstrap interval over the images; low when the whole interval lies below its test mAP (the
    `map` tag) minus monitor.max_accuracy_drop."""
    labelled = rows.iloc[:0]
    if len(rows) and TRUE_BOXES in rows and "detections" in rows:
        mine = rows["model_version"].astype(str) == version
        known = rows[TRUE_BOXES].map(_listed).notna() & rows["detections"].map(_listed).notna()
        labelled = rows[mine & known]
    tested = tags.get("map")
    quality = LiveQuality(
        status="not_enough_feedback",
        model_version=version,
        labelled=len(labelled),
        test_accuracy=float(tested) if tested else None,
        max_drop=params.max_accuracy_drop,
        metric="mAP",
    )
    if len(labelled) < params.min_feedback:
        return quality
    found, truths = labelled["detections"].map(_listed).tolist(), labelled[TRUE_BOXES].map(_listed).tolist()
    names = sorted({box["label"] for image in found + truths for box in image})
    index = {name: i for i, name in enumerate(names)}
    matches = []
    for detections, true in zip(found, truths, strict=True):
        boxes, labels = _box_arrays(detections, index)
        scores = np.array([d["score"] for d in detections], dtype=np.float64)
        matches.append(match_image(boxes, scores, labels, *_box_arrays(true, index), len(names)))
    low, high = bootstrap_map(matches, len(names), seed, LIVE_RESAMPLES)
    alarm = quality.test_accuracy is not None and high < quality.test_accuracy - params.max_accuracy_drop
    return quality.model_copy(
        update={"status": "low" if alarm else "ok", "accuracy": mean_ap(matches, len(names)), "low": low, "high": high}
    )
