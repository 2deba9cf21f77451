"""Detection's data part: the configured box source imported as images with a box table (with the labelled
production images), and each prepared image's boxes as training and evaluation read them."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cvops.config import Params, Project
from cvops.data.prepare import DatasetRef, load_split_images
from cvops.data.preprocess import Fit
from cvops.data.production import PRODUCTION, provenance, read_inbox_boxes, read_production
from cvops.tasks.detection.boxes import COORDS, Box, DetectionSource, Scene, import_scenes, read_boxes
from cvops.tasks.detection.scenes import detection_source

BoxSet = tuple[np.ndarray, np.ndarray]  # one image's boxes (K, 4) float32 x1, y1, x2, y2 and class indices (K,)


def import_raw(project: Project, params: Params) -> pd.DataFrame:
    """The source params.yaml names into data/raw as images/ with the box table, with the labelled production
    images of data/production (`cvops labels import`); the image manifest."""
    source = detection_source(params.data, params.base.seed)
    return import_scenes(with_production(source, project.production_dir), project.raw_dir)[0]


def with_production(source: DetectionSource, inbox: Path) -> DetectionSource:
    """`source` followed by the inbox's images, each named production-<request_id>, with its true boxes and its
    provenance."""
    rows, boxes = read_production(inbox), read_inbox_boxes(inbox)
    by_image = {image: group for image, group in boxes.groupby("image")}

    def scenes() -> Iterator[Scene]:
        yield from source.scenes
        for row in rows.to_dict("records"):
            name, path = f"{PRODUCTION}-{row['request_id']}", str(row["path"])
            group = by_image.get(path, boxes.iloc[:0])
            found = [
                Box(f"{name}-{k}", box["label"], box["label"], box["x1"], box["y1"], box["x2"], box["y2"])
                for k, box in enumerate(group.to_dict("records"))
            ]
            yield Scene(name, found, file=inbox / path, meta=provenance(row))

    return DetectionSource(source.classes, source.total + len(rows), scenes(), source.orphans)


def load_split(ref: DatasetRef, split: str) -> tuple[np.ndarray, list[BoxSet], pd.DataFrame]:
    """Images (N,H,W,3 uint8) of one split of a detection dataset, each image's boxes in the prepared image's
    pixels (scaled from the original's, as the image was) with class indices, and the manifest rows."""
    images, rows = load_split_images(ref, split)
    boxes = read_boxes(Path(ref.prepared_dir))
    lookup = {name: i for i, name in enumerate(ref.class_names)}
    by_image = {image: group for image, group in boxes.groupby("image")}
    targets = []
    for path, width, height in zip(rows["path"], rows["width"], rows["height"], strict=True):
        group = by_image.get(path, boxes.iloc[:0])
        fit = Fit.of(width, height, ref.image_size, ref.resize)
        coords = fit.to_input(group[COORDS].to_numpy(dtype=np.float64)).astype(np.float32)
        targets.append((coords, group["label"].map(lookup).to_numpy(dtype=np.int64)))
    return images, targets, rows
