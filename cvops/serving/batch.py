"""Batch inference: score a folder of images with a served model, the service's code path without HTTP."""

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from cvops.artifacts import resolve
from cvops.config import DistributedParams, ServeParams
from cvops.console import progress
from cvops.errors import DataError
from cvops.inference_log import InferenceLog, LogTarget
from cvops.registry import ModelRegistry
from cvops.reports import metric_name
from cvops.serving.predictor import DecodedImage, Predictor, RequestError, decode_image

PREDICTION_COLUMNS = ("path", "label", "score", "model_version", "error")  # a predictions file's, in order


def list_files(input_dir: Path) -> list[Path]:
    """Every file under `input_dir` but hidden ones, sorted: the rows a batch-inference output has."""
    if not input_dir.is_dir():
        raise DataError(f"input folder {input_dir} does not exist")
    files = sorted(path for path in input_dir.rglob("*") if path.is_file() and not path.name.startswith("."))
    if not files:
        raise DataError(f"no files in {input_dir}: put the images to score there")
    return files


def score_files(predictor: Predictor, files: Iterable[tuple[str, Path]], max_pixels: int) -> list[dict[str, Any]]:
    """One row per (name, path): the inference-log row of its prediction, or why it was not scored (not an
    image, or not readable here); the readable images go through the model in one call."""
    rows: list[dict[str, Any]] = []
    decoded: list[tuple[str, DecodedImage]] = []
    for name, path in files:
        try:
            decoded.append((name, decode_image(path.read_bytes(), predictor.preprocessing.image_size, max_pixels)))
        except RequestError as err:
            rows.append({"path": name, "error": str(err)})
        except OSError as err:  # gone since it was listed, or not visible on this (Ray) node
            rows.append({"path": name, "error": f"could not read the file: {err.strerror or err}"})
    if decoded:
        probabilities, embeddings = predictor.predict(np.stack([image.pixels for _, image in decoded]))
        for (name, image), p, e in zip(decoded, probabilities, embeddings, strict=True):
            rows.append({"path": name, **predictor.log_row(image, p, e)})
    return rows


def predictions_frame(rows: list[dict[str, Any]], version: str) -> pd.DataFrame:
    """Rows of `score_files` as one frame in path order, every row with every column of the output (a folder
    with no readable image has no label or score to give)."""
    frame = pd.DataFrame(rows).sort_values("path", kind="stable").reset_index(drop=True)
    frame["model_version"] = version
    for column in PREDICTION_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


def score_folder(predictor: Predictor, input_dir: Path, max_pixels: int) -> pd.DataFrame:
    """One row per file under `input_dir`: label, score and model version, or why the file was not scored."""
    files = list_files(input_dir)
    rows: list[dict[str, Any]] = []
    for start in progress(range(0, len(files), predictor.max_batch), "score", unit="batch"):
        chunk = files[start : start + predictor.max_batch]
        rows += score_files(predictor, ((str(f.relative_to(input_dir)), f) for f in chunk), max_pixels)
    return predictions_frame(rows, predictor.version)


def write_predictions(frame: pd.DataFrame, output: Path) -> Path:
    """Parquet for .parquet, else CSV; written to a temporary file and renamed, so never half-written."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    if output.suffix == ".parquet":
        frame[list(PREDICTION_COLUMNS)].to_parquet(partial, index=False)
    else:
        frame[list(PREDICTION_COLUMNS)].to_csv(partial, index=False)
    os.replace(partial, output)
    return output


def score_and_log(
    registry: ModelRegistry, cache_dir: Path, selector: str, input_dir: Path, output: Path, serve: ServeParams,
    distributed: DistributedParams, log_to: LogTarget,
) -> dict[str, int]:  # fmt: skip
    """Score every file of `input_dir` with the `selector` model, in this process or on Ray (`distributed`):
    predictions to `output`, counts to the active MLflow run, every scored image to the inference log `log_to`.
    Returns the counts."""
    served = resolve(registry, selector, cache_dir)
    if distributed.engine == "ray":
        from cvops.serving.on_ray import score_on_ray

        frame = score_on_ray(served, input_dir, serve, distributed)
    else:
        frame = score_folder(Predictor.of(served, serve.max_batch_images), input_dir, serve.max_image_pixels)
    write_predictions(frame, output)
    scored = frame[frame["error"].isna()]
    counts = {"images": len(frame), "scored": len(scored), "unreadable": len(frame) - len(scored),
              **{f"label_{k}": int(v) for k, v in scored["label"].value_counts().items()}}  # fmt: skip
    mlflow.log_metrics({metric_name(f"batch_{k}"): v for k, v in counts.items()})
    mlflow.set_tags({"model_version": served.version, "input_dir": str(input_dir), "output": str(output),
                     "engine": distributed.engine})  # fmt: skip
    inference_log = InferenceLog(log_to)
    inference_log.append(
        {"endpoint": "batch", **row} for row in scored.drop(columns=["path", "error"]).to_dict("records")
    )
    inference_log.close()
    return counts
