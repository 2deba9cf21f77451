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
from cvops.data.prepare import DatasetRef
from cvops.errors import ModelError
from cvops.serving.features import FEATURES, image_features
from cvops.serving.projection import PROJECTION_FILE, Projection
from cvops.tasks import task
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


def build_reference(onnx_path: Path, ref: DatasetRef, out_dir: Path, dims: int, post: PostProcess) -> ReferenceSummary:
    """Run the shipped ONNX model over the train and validation splits and write the reference folder
    (complete or not at all). The model's view is the task's (its monitor part's `reference_view`): a detector's
    also holds its answer per image (`BOX_COLUMNS`, made as the service makes them, with the served
    post-processing `post`; a classifier ignores it)."""
    table, projection, model_rows = task(ref.task).monitor.reference_view(onnx_path, ref, dims, post)
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
        raise ModelError(f"no monitoring reference in {directory}: re-export the version with `cvops quantize V`")
    return pd.read_parquet(table), Projection.load(projection)
