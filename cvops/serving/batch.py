"""Batch inference: score a folder of images (on this machine or under an s3:// prefix) with a served model,
the service's code path without HTTP."""

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from cvops.console import progress
from cvops.errors import ConfigError, DataError, ServiceUnavailable
from cvops.serving.feedback import new_request_id
from cvops.serving.predictor import DecodedImage, Predictor, RequestError, decode_image
from cvops.tasks.detection.boxes import COORDS

PREDICTION_COLUMNS = ("path", "request_id", "label", "score", "model_version", "error")  # a classifier's file
BOX_PREDICTION_COLUMNS = ("path", "request_id", "label", "score", *COORDS, "model_version", "error")  # a detector's
DETECTIONS = "detections"  # a detector's answer for one image, in the rows of `score_files`


S3 = "s3://"


def input_location(value: str) -> str:
    """Where batch inference reads: an s3://bucket/prefix as it is, a folder as an absolute path; checked to
    exist (the S3 keys come from the AWS_* variables, as boto3 reads them: `. .team/env` on the team stack)."""
    if "://" in value and not value.startswith(S3):
        raise ConfigError(f"cannot read {value}: give a folder or an s3://bucket/prefix")
    location = value.rstrip("/") if value.startswith(S3) else str(Path(value).resolve())
    with _reading(location):
        fs, root = fsspec.core.url_to_fs(location)
        if not fs.isdir(root):
            raise FileNotFoundError(location)
    return location


def list_inputs(location: str) -> list[tuple[str, str]]:
    """Every file under `location` (from `input_location`) but hidden ones, sorted by name: (its name under
    `location`, where `read_input` reads it); the rows a batch-inference output has."""
    with _reading(location):
        fs, root = fsspec.core.url_to_fs(location)
        found = sorted(fs.find(root))
    prefix = S3 if location.startswith(S3) else ""
    visible = (path for path in found if not path.rpartition("/")[2].startswith("."))
    files = [(path[len(root) :].lstrip("/"), prefix + path) for path in visible]
    if not files:
        raise DataError(f"no files in {location}: put the images to score there")
    return files


def read_input(path: str) -> bytes:
    """The bytes of one listed file; OSError when it is gone or cannot be read here (another Ray node)."""
    with fsspec.open(path, "rb") as file:
        return file.read()


@contextmanager
def _reading(location: str) -> Iterator[None]:
    """Listing `location`: a missing folder or prefix is a DataError, an S3 server that cannot be reached or
    refuses the keys is one line saying so."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    try:
        yield
    except FileNotFoundError:
        raise DataError(f"input {location} does not exist: give a folder of images or an S3 prefix") from None
    except NoCredentialsError:
        raise ConfigError(
            f"no S3 keys to list {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(on the team stack: . .team/env)"
        ) from None
    except (OSError, BotoCoreError) as err:
        raise ServiceUnavailable(
            f"cannot list {location}: {err}; check the S3 endpoint and keys (AWS_ENDPOINT_URL, "
            "AWS_ACCESS_KEY_ID; on the team stack: . .team/env)"
        ) from None


def score_files(predictor: Predictor, files: Iterable[tuple[str, str]], max_pixels: int) -> list[dict[str, Any]]:
    """One row per (name, path) of `list_inputs`: the inference-log row of its prediction, with a request id
    for its feedback (`cvops feedback import`) and a detector's detections, or why it was not scored (not an
    image, or not readable here); the readable images go through the model in one call."""
    rows: list[dict[str, Any]] = []
    decoded: list[tuple[str, DecodedImage]] = []
    pre = predictor.preprocessing
    for name, path in files:
        try:
            decoded.append((name, decode_image(read_input(path), pre.image_size, max_pixels, pre.resize, pre.decoder)))
        except RequestError as err:
            rows.append({"path": name, "error": str(err)})
        except OSError as err:  # gone since it was listed, or not visible on this (Ray) node
            reason = err.strerror or ("no such file" if isinstance(err, FileNotFoundError) else str(err))
            rows.append({"path": name, "error": f"could not read the file: {reason}"})
    if decoded:
        outputs = predictor.predict(np.stack([image.pixels for _, image in decoded]))
        for k, (name, image) in enumerate(decoded):
            answer, row = predictor.reply(tuple(output[k] for output in outputs), image)
            found = {DETECTIONS: answer[DETECTIONS]} if DETECTIONS in answer else {}
            rows.append({"path": name, "request_id": new_request_id(), **row, **found})
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


def score_inputs(predictor: Predictor, location: str, max_pixels: int) -> pd.DataFrame:
    """One row per file under `location`: label, score and model version, or why the file was not scored."""
    files = list_inputs(location)
    rows: list[dict[str, Any]] = []
    for start in progress(range(0, len(files), predictor.max_batch), "score", unit="batch"):
        rows += score_files(predictor, files[start : start + predictor.max_batch], max_pixels)
    return predictions_frame(rows, predictor.version)


def predictions_table(frame: pd.DataFrame) -> pd.DataFrame:
    """What a predictions file holds: a classifier's row per file (label, score), or a detector's row per box
    (label, score, x1 y1 x2 y2 in the pixels of the image) and one row, without them, for an image with no box;
    a file that was not scored has its error."""
    if DETECTIONS not in frame:
        return frame[list(PREDICTION_COLUMNS)]
    rows: list[dict[str, Any]] = []
    for record in frame.to_dict("records"):
        image = {key: record[key] for key in ("path", "request_id", "model_version", "error")}
        found = record[DETECTIONS] if isinstance(record[DETECTIONS], list) else []
        boxes = [
            {**image, "label": d["label"], "score": d["score"], **dict(zip(COORDS, d["box"], strict=True))}
            for d in found
        ]
        rows += boxes or [{**image, "label": None, "score": None}]
    return pd.DataFrame(rows, columns=list(BOX_PREDICTION_COLUMNS))


def write_predictions(table: pd.DataFrame, output: Path) -> Path:
    """`predictions_table` as Parquet for .parquet, else CSV; written to a temporary file and renamed, so never
    half-written."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    if output.suffix == ".parquet":
        table.to_parquet(partial, index=False)
    else:
        table.to_csv(partial, index=False)
    os.replace(partial, output)
    return output
