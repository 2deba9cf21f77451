"""The monitoring reference of a model version: its training images as the shipped model saw them.

Per training image: the image statistics of `features.py`, the original size, the embedding (the
penultimate layer) reduced by a projection fitted here, and the predicted label. Stored with the
version, it is what monitoring compares live traffic against; the service applies the same projection
to the embeddings it logs.
"""

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

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, explained=np.float32(self.explained))

    @classmethod
    def load(cls, path: Path) -> "Projection":
        with np.load(path) as saved:
            return cls(mean=saved["mean"], components=saved["components"], explained=float(saved["explained"]))


class ReferenceSummary(BaseModel):
    """What the reference folder holds; logged as reference/reference.json with the version."""

    directory: str
    rows: int
    embedding_dims: int
    explained_variance: float
    split: str = "train"


def reference_table(
    images: np.ndarray, sizes: pd.DataFrame, labels: list[str], embeddings: np.ndarray | None
) -> pd.DataFrame:
    """One row per image: statistics, original width and height, projected embedding, predicted label."""
    table = pd.DataFrame([image_features(image) for image in images])
    table["width"] = sizes["width"].to_numpy(dtype=float)
    table["height"] = sizes["height"].to_numpy(dtype=float)
    if embeddings is not None:
        table[embedding_columns(embeddings.shape[1])] = embeddings
    table[PREDICTION] = labels
    return table


def build_reference(onnx_path: Path, ref: DatasetRef, out_dir: Path, dims: int) -> ReferenceSummary:
    """Run the shipped ONNX model over the train split and write the reference folder (complete or not at all)."""
    images, _, manifest = load_split(ref, "train")
    preprocessing = read_preprocessing(onnx_path)
    logits, embeddings = predict_outputs(
        session(onnx_path), model_inputs(images, preprocessing.mean, preprocessing.std)
    )
    if embeddings is None:
        raise ModelError(
            f"{onnx_path.name} has no embedding output (exported before monitoring existed): "
            "re-export it with `cvops quantize --version V`"
        )
    projection = Projection.fit(embeddings, dims)
    labels = [preprocessing.class_names[i] for i in logits.argmax(axis=1)]
    table = reference_table(images, manifest, labels, projection.apply(embeddings))

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    table.to_parquet(partial / TABLE_FILE, index=False)
    projection.save(partial / PROJECTION_FILE)
    summary = ReferenceSummary(
        directory=str(out_dir), rows=len(table), embedding_dims=projection.dims,
        explained_variance=round(projection.explained, 4),
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
