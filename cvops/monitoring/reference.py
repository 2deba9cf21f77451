"""The monitoring reference of a model version: what its training data looked like, to the shipped model.

Two kinds of columns. The image statistics of `cvops/serving/features.py` and the original size, which need no model,
for every train and validation image. The model's view, for the validation images only: the embedding
(the penultimate layer) reduced by a projection fitted on the train embeddings, and the predicted label.
The model has fitted its train images, so it embeds and labels them unlike any new image: with the
model's view of the train split as reference, unchanged traffic alarmed in 22% of 1,000-image windows
(bench/drift.py); held-out images make the reference what unchanged traffic looks like.

Stored with the version, it is what monitoring compares live traffic against; the service applies the
same projection to the embeddings it logs.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from cvops.console import progress
from cvops.data.prepare import DatasetRef, load_split, load_split_images
from cvops.data.preprocess import model_inputs
from cvops.errors import ModelError
from cvops.export.onnx_model import detect_outputs, predict_outputs, preprocessing_of, read_preprocessing, session
from cvops.serving.features import FEATURES, image_features
from cvops.serving.projection import PROJECTION_FILE, Projection
from cvops.tasks.detection.postprocess import PostProcess

STATISTICS = (*FEATURES, "width", "height")  # the per-image columns that need no model
EMBEDDING_PREFIX = "emb_"
PREDICTION = "label"
BOX_COLUMNS = ("boxes", "box_area", "box_aspect", "mean_score")  # a detector's answer per image (box_summary)
BOX_LABELS = "labels"  # and the class of each of its boxes, a list per image (drift tests their mix)
TABLE_FILE, SUMMARY_FILE = "reference.parquet", "reference.json"


def embedding_columns(dims: int) -> list[str]:
    return [f"{EMBEDDING_PREFIX}{i}" for i in range(dims)]


class ReferenceSummary(BaseModel):
    """What the reference folder holds; logged as reference/reference.json with the version."""

    directory: str
    rows: int  # images with statistics (train + validation)
    model_rows: int  # of them with the model's embedding and label (validation)
    embedding_dims: int
    explained_variance: float  # of the train embeddings, by the projection
    projection: str  # the projection's fingerprint


def reference_table(
    images: np.ndarray, sizes: pd.DataFrame, labels: list[str] | None = None, embeddings: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per image: statistics, original width and height, and (when given) projected embedding and
    predicted label."""
    table = pd.DataFrame([image_features(image) for image in progress(images, "image features")])
    table["width"] = sizes["width"].to_numpy(dtype=float)
    table["height"] = sizes["height"].to_numpy(dtype=float)
    if embeddings is not None:
        table[embedding_columns(embeddings.shape[1])] = embeddings
    table[PREDICTION] = labels
    return table


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
                f"{onnx_path.name} has no embedding output (exported before monitoring existed): "
                "re-export it with `cvops quantize --version V`"
            )
        logits.append(batch_logits)
        embeddings.append(batch_embeddings)
    return np.concatenate(logits), np.concatenate(embeddings)


def _classifier_view(onnx_path: Path, ref: DatasetRef, dims: int) -> tuple[pd.DataFrame, Projection, int]:
    """The reference table of a classifier, its projection, and how many rows hold the model's view."""
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


def _embeddings(onnx_path: Path, images: np.ndarray, desc: str, batch_size: int = 64) -> np.ndarray:
    onnx = session(onnx_path)
    pre = preprocessing_of(onnx, onnx_path)
    return np.concatenate(
        [
            detect_outputs(onnx, model_inputs(images[i : i + batch_size], pre.mean, pre.std))[1]
            for i in progress(range(0, len(images), batch_size), desc, unit="batch")
        ]
    )


def _detector_view(
    onnx_path: Path, ref: DatasetRef, dims: int, post: PostProcess
) -> tuple[pd.DataFrame, Projection, int]:
    """A detector's reference table: statistics, projected embeddings, and per validation image the served
    answer's summary (serving.detector.box_summary): the best box's class as the label, every box's class."""
    from cvops.tasks.detection.predictor import DetectionPredictor, box_summary

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


def build_reference(onnx_path: Path, ref: DatasetRef, out_dir: Path, dims: int, post: PostProcess) -> ReferenceSummary:
    """Run the shipped ONNX model over the train and validation splits and write the reference folder
    (complete or not at all). A detector's view also holds its answer per image (`BOX_COLUMNS`, made as the
    service makes them, with the served post-processing `post`; a classifier ignores it)."""
    if ref.task == "detection":
        table, projection, model_rows = _detector_view(onnx_path, ref, dims, post)
    else:
        table, projection, model_rows = _classifier_view(onnx_path, ref, dims)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    table.to_parquet(partial / TABLE_FILE, index=False)
    projection.save(partial / PROJECTION_FILE)
    summary = ReferenceSummary(
        directory=str(out_dir),
        rows=len(table),
        model_rows=model_rows,
        embedding_dims=projection.dims,
        explained_variance=round(projection.explained, 4),
        projection=projection.fingerprint,
    )
    (partial / SUMMARY_FILE).write_text(json.dumps(summary.model_dump(), indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)
    return summary


def load_reference(directory: Path) -> tuple[pd.DataFrame, Projection]:
    table, projection = directory / TABLE_FILE, directory / PROJECTION_FILE
    if not table.is_file() or not projection.is_file():
        raise ModelError(
            f"no monitoring reference in {directory}: re-export the version with `cvops quantize --version V`"
        )
    return pd.read_parquet(table), Projection.load(projection)
