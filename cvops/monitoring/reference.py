"""The monitoring reference of a model version: what its training data looked like, to the shipped model.

Two kinds of columns. The image statistics of `features.py` and the original size, which need no model,
for every train and validation image. The model's view, for the validation images only: the embedding
(the penultimate layer) reduced by a projection fitted on the train embeddings, and the predicted label.
The model has fitted its train images, so it embeds and labels them unlike any new image: with the
model's view of the train split as reference, unchanged traffic alarmed in 22% of 1,000-image windows
(bench/drift.py); held-out images make the reference what unchanged traffic looks like.

Stored with the version, it is what monitoring compares live traffic against; the service applies the
same projection to the embeddings it logs.
"""

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from cvops.data.prepare import DatasetRef, load_split
from cvops.data.preprocess import model_inputs
from cvops.errors import ModelError
from cvops.monitoring.features import FEATURES, image_features
from cvops.onnx_model import predict_outputs, read_preprocessing, session

STATISTICS = (*FEATURES, "width", "height")  # the per-image columns that need no model
EMBEDDING_PREFIX = "emb_"
PREDICTION = "label"
TABLE_FILE, PROJECTION_FILE, SUMMARY_FILE = "reference.parquet", "projection.npz", "reference.json"


def embedding_columns(dims: int) -> list[str]:
    return [f"{EMBEDDING_PREFIX}{i}" for i in range(dims)]


@dataclass(frozen=True)
class Projection:
    """Principal components of the reference embeddings: (N, D) embeddings to (N, dims) coordinates."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (dims, D)
    explained: float  # share of the reference's embedding variance the components keep

    @classmethod
    def fit(cls, embeddings: np.ndarray, dims: int) -> "Projection":
        mean = embeddings.mean(axis=0)
        _, singular, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
        dims = min(dims, len(singular))
        variance = singular**2
        explained = float(variance[:dims].sum() / variance.sum()) if variance.sum() > 0 else 1.0
        return cls(mean=mean.astype(np.float32), components=vt[:dims].astype(np.float32), explained=explained)

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        return (embeddings - self.mean) @ self.components.T

    @property
    def dims(self) -> int:
        return len(self.components)

    @property
    def fingerprint(self) -> str:
        """Names this projection in every logged row: embeddings compare only under the same projection."""
        return hashlib.sha256(self.mean.tobytes() + self.components.tobytes()).hexdigest()[:12]

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, explained=np.float32(self.explained))

    @classmethod
    def load(cls, path: Path) -> "Projection":
        with np.load(path) as saved:
            return cls(mean=saved["mean"], components=saved["components"], explained=float(saved["explained"]))


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
    table = pd.DataFrame([image_features(image) for image in images])
    table["width"] = sizes["width"].to_numpy(dtype=float)
    table["height"] = sizes["height"].to_numpy(dtype=float)
    if embeddings is not None:
        table[embedding_columns(embeddings.shape[1])] = embeddings
    table[PREDICTION] = labels
    return table


def _outputs(onnx_path: Path, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of the ONNX model, a batch of preprocessed images at a time."""
    preprocessing = read_preprocessing(onnx_path)
    model = session(onnx_path)
    logits, embeddings = [], []
    for start in range(0, len(images), batch_size):
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


def build_reference(onnx_path: Path, ref: DatasetRef, out_dir: Path, dims: int) -> ReferenceSummary:
    """Run the shipped ONNX model over the train and validation splits and write the reference folder
    (complete or not at all)."""
    train_images, _, train_manifest = load_split(ref, "train")
    val_images, _, val_manifest = load_split(ref, "val")
    _, train_embeddings = _outputs(onnx_path, train_images)
    projection = Projection.fit(train_embeddings, dims)
    val_logits, val_embeddings = _outputs(onnx_path, val_images)
    class_names = read_preprocessing(onnx_path).class_names
    labels = [class_names[i] for i in val_logits.argmax(axis=1)]
    table = pd.concat(
        [reference_table(train_images, train_manifest).assign(split="train"),
         reference_table(val_images, val_manifest, labels, projection.apply(val_embeddings)).assign(split="val")],
        ignore_index=True,
    )  # fmt: skip

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    table.to_parquet(partial / TABLE_FILE, index=False)
    projection.save(partial / PROJECTION_FILE)
    summary = ReferenceSummary(
        directory=str(out_dir), rows=len(table), model_rows=len(val_images), embedding_dims=projection.dims,
        explained_variance=round(projection.explained, 4), projection=projection.fingerprint,
    )  # fmt: skip
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
