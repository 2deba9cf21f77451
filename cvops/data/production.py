"""Production images with true labels: the inbox `cvops labels import` fills, and what the data stages make of it.

`data/production/<class>/<request_id>.<ext>` with a manifest of provenance (source=production, the request,
when it was captured, who labelled it, the version that answered); a detector's inbox holds `images/` and
`boxes.csv`, their true boxes. It is versioned with `dvc add` and is a
dependency of DVC's import stage, which copies it into data/raw beside the source's images: a new data
version. In the split, a production image's place depends only on its content (a seeded hash), so it keeps its
split in every later version; its test images form the `recent` evaluation slice.

The inbox also holds `corrections.csv`: labels people reviewed (the suspects of `cvops labels queue --strategy
suspect`), each with who reviewed it, when, and the label it had. The import applies the latest review of each
image (by its content) on top of the source's label, and the manifest keeps the source's label as `label_before`:
the split is drawn on that label, so a corrected image, and every other, keeps its split.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cvops.data.manifest import BOXES, LABEL_BEFORE, MANIFEST, load_manifest
from cvops.data.sources import Sample, Source
from cvops.tasks.detection.boxes import COORDS

PRODUCTION = "production"  # the manifest's `source` of these images
RECENT = "recent"  # the evaluation slice: production images in the test split
SOURCE_COLUMN = "source"
PROVENANCE = ["request_id", "captured_at", "labeller", "model_version", "predicted"]
COLUMNS = ["path", "label", "sha256", SOURCE_COLUMN, *PROVENANCE]
INBOX_BOX_COLUMNS = ["image", "label", *COORDS]  # a detector's inbox: boxes.csv, the true boxes of its images
CORRECTIONS = "corrections.csv"
REVIEWED_BY, REVIEWED_AT = "reviewed_by", "reviewed_at"  # who reviewed an image's label, and when
REVIEW = [REVIEWED_BY, REVIEWED_AT]
CORRECTION_COLUMNS = ["sha256", "path", "label", LABEL_BEFORE, *REVIEW]


def read_production(directory: Path) -> pd.DataFrame:
    """The inbox's manifest (no rows when there is none yet)."""
    path = directory / MANIFEST
    return load_manifest(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)


def read_inbox_boxes(directory: Path) -> pd.DataFrame:
    """The true boxes of a detector's inbox images (no rows when there is none)."""
    path = directory / BOXES
    if not path.is_file():
        return pd.DataFrame(columns=INBOX_BOX_COLUMNS)
    return pd.read_csv(path, dtype={"image": str, "label": str}, keep_default_na=False)


def provenance(row: dict[str, object]) -> dict[str, str | float | int]:
    """What an inbox image's manifest row carries into data/raw's manifest: its source and provenance."""
    return {key: row[key] for key in (SOURCE_COLUMN, *PROVENANCE) if pd.notna(row.get(key))}  # type: ignore[misc]


def read_corrections(directory: Path) -> pd.DataFrame:
    """Every review `cvops labels import` recorded, oldest first (no rows when there is none)."""
    path = directory / CORRECTIONS
    if not path.is_file():
        return pd.DataFrame(columns=CORRECTION_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def reviewed_labels(directory: Path) -> dict[str, dict[str, str]]:
    """Each reviewed image's label and the review's provenance (reviewed_by, reviewed_at), by the image's sha256:
    its latest review."""
    rows = read_corrections(directory).drop_duplicates("sha256", keep="last")
    return {
        row["sha256"]: {"label": row["label"], **{key: row[key] for key in REVIEW}} for row in rows.to_dict("records")
    }


def ensure_inbox(directory: Path) -> None:
    """An empty inbox, so DVC's import stage finds its dependency before anything was labelled."""
    if not (directory / MANIFEST).is_file():
        directory.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(columns=COLUMNS).to_csv(directory / MANIFEST, index=False)


def with_production(source: Source, directory: Path) -> Source:
    """`source` followed by the inbox's images, each named production-<request_id> in its class folder and
    carrying its provenance into the manifest."""
    rows = read_production(directory)

    def samples() -> Iterator[Sample]:
        yield from source.samples
        for row in rows.to_dict("records"):
            name, file = f"{PRODUCTION}-{row['request_id']}", directory / str(row["path"])
            yield Sample(str(row["label"]), name, file=file, meta=provenance(row))

    classes = sorted({*source.classes, *rows["label"].astype(str)})
    return Source(classes=classes, total=source.total + len(rows), samples=samples())


def is_production(manifest: pd.DataFrame) -> np.ndarray:
    if SOURCE_COLUMN not in manifest:
        return np.zeros(len(manifest), dtype=bool)
    return (manifest[SOURCE_COLUMN].astype(str) == PRODUCTION).to_numpy()


def stable_split(sha256: pd.Series, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """train/val/test from a seeded hash of each image's content: the same image lands in the same split in
    every data version, whatever else was added."""

    def unit(digest: str) -> float:
        return int(hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()[:15], 16) / 16**15

    draws = sha256.astype(str).map(unit)
    return pd.Series(
        np.where(draws < test_fraction, "test", np.where(draws < test_fraction + val_fraction, "val", "train")),
        index=sha256.index,
    )
