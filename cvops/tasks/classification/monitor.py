"""A classifier's monitoring: its reference (image statistics of the train and validation splits, and the model's
view of the validation images: projected embedding, predicted label, as cvops/monitoring/reference.py stores it),
and its live accuracy."""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cvops.config import MonitorParams
from cvops.console import progress
from cvops.data.prepare import DatasetRef, load_split
from cvops.data.preprocess import model_inputs
from cvops.errors import ModelError
from cvops.export.onnx_model import predict_outputs, preprocessing_of, read_preprocessing, session
from cvops.monitoring.quality import LiveQuality
from cvops.monitoring.quality import live_quality as live_accuracy
from cvops.monitoring.reference import reference_table
from cvops.serving.projection import Projection

if TYPE_CHECKING:
    from cvops.tasks.detection.postprocess import PostProcess


def _outputs(onnx_path: Path, images: np.ndarray, desc: str, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of the ONNX model, a batch of preprocessed images at a time."""
    model = session(onnx_path)
    preprocessing = preprocessing_of(model, onnx_path)
    logits, embeddings = [], []
    for start in progress(range(0, len(images), batch_size), desc, unit="batch"):
        inputs = model_inputs(images[start : start + batch_size], preprocessing.mean, preprocessing.std)
        batch_logits, batch_embeddings = predict_outputs(model, inputs)
        if batch_embeddings is None:
            raise ModelError(
                f"{onnx_path.name} has no embedding output, which drift monitoring compares: a model of your own "
                "needs a get_classifier() method naming its head; a file exported before monitoring existed: "
                "re-export it with `cvops quantize V`"
            )
        logits.append(batch_logits)
        embeddings.append(batch_embeddings)
    return np.concatenate(logits), np.concatenate(embeddings)


def reference_view(
    onnx_path: Path, ref: DatasetRef, dims: int, post: "PostProcess"
) -> tuple[pd.DataFrame, Projection, int]:
    """The reference table of a classifier, its projection, and how many rows hold the model's view (`post`, a
    detector's post-processing, is not a classifier's)."""
    train_images, _, train_manifest = load_split(ref, "train")
    val_images, _, val_manifest = load_split(ref, "val")
    _, train_embeddings = _outputs(onnx_path, train_images, "reference (train)")
    projection = Projection.fit(train_embeddings, dims)
    val_logits, val_embeddings = _outputs(onnx_path, val_images, "reference (val)")
    class_names = read_preprocessing(onnx_path).class_names
    labels = [class_names[i] for i in val_logits.argmax(axis=1)]
    table = pd.concat(
        [
            reference_table(train_images, train_manifest).assign(split="train"),
            reference_table(val_images, val_manifest, labels, projection.apply(val_embeddings)).assign(split="val"),
        ],
        ignore_index=True,
    )
    return table, projection, len(val_images)


def live_quality(
    rows: pd.DataFrame, version: str, tags: dict[str, str], params: MonitorParams, seed: int
) -> LiveQuality:
    """A classifier's live accuracy (`live_accuracy`) against its test accuracy (the `accuracy` tag); `seed` is
    unused: its interval is exact."""
    tested = tags.get("accuracy")
    return live_accuracy(rows, version, float(tested) if tested else None, params)
