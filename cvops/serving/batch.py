"""Batch inference: score a folder of images with a served model, the service's code path without HTTP."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cvops.errors import DataError
from cvops.serving.predictor import DecodedImage, Predictor, RequestError, decode_image


def score_folder(predictor: Predictor, input_dir: Path, max_pixels: int, batch_size: int = 64) -> pd.DataFrame:
    """One row per file under `input_dir`: label, score and model version, or why the file was not scored."""
    if not input_dir.is_dir():
        raise DataError(f"input folder {input_dir} does not exist")
    files = sorted(path for path in input_dir.rglob("*") if path.is_file() and not path.name.startswith("."))
    if not files:
        raise DataError(f"no files in {input_dir}: put the images to score there")
    size = predictor.preprocessing.image_size
    rows: list[dict[str, object]] = []
    for start in tqdm(range(0, len(files), batch_size), desc="score", unit="batch", disable=None):
        decoded: list[tuple[Path, DecodedImage]] = []
        for path in files[start : start + batch_size]:
            try:
                decoded.append((path, decode_image(path.read_bytes(), size, max_pixels)))
            except RequestError as err:
                rows.append({"path": str(path.relative_to(input_dir)), "error": str(err)})
        if not decoded:
            continue
        probabilities, embeddings = predictor.predict(np.stack([image.pixels for _, image in decoded]))
        for (path, image), p, e in zip(decoded, probabilities, embeddings, strict=True):
            rows.append({"path": str(path.relative_to(input_dir)), **predictor.log_row(image, p, e)})
    frame = pd.DataFrame(rows).sort_values("path", kind="stable").reset_index(drop=True)
    frame["model_version"] = predictor.version
    if "error" not in frame:
        frame["error"] = None
    return frame


def write_predictions(frame: pd.DataFrame, output: Path) -> Path:
    """Parquet for .parquet, else CSV; written to a temporary file and renamed, so never half-written."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    columns = ["path", "label", "score", "model_version", "error"]
    if output.suffix == ".parquet":
        frame[columns].to_parquet(partial, index=False)
    else:
        frame[columns].to_csv(partial, index=False)
    os.replace(partial, output)
    return output
