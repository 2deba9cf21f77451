"""A detector's monitoring reference: image statistics of the train and validation splits, the projected
embeddings, and per validation image the served answer's summary (`BOX_COLUMNS`, `BOX_LABELS`), as
cvops/monitoring/reference.py stores it."""

from pathlib import Path

import numpy as np
import pandas as pd

from cvops.console import progress
from cvops.data.prepare import DatasetRef, load_split_images
from cvops.data.preprocess import model_inputs
from cvops.export.onnx_model import detect_outputs, preprocessing_of, session
from cvops.monitoring.reference import BOX_COLUMNS, BOX_LABELS, reference_table
from cvops.serving.projection import Projection
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
