"""Production images with true labels: the inbox `cvops labels import` fills, and what the data stages make of it.

`data/production/<class>/<request_id>.<ext>` with a manifest of provenance (source=production, the request,
when it was captured, who labelled it, the version that answered). It is versioned with `dvc add` and is a
dependency of DVC's import stage, which copies it into data/raw beside the source's images: a new data
version. In the split, a production image's place depends only on its content (a seeded hash), so it keeps its
split in every later version; its test images form the `recent` evaluation slice.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cvops.data.manifest import MANIFEST, load_manifest
from cvops.data.sources import Sample, Source

PRODUCTION = "production"  # the manifest's `source` of these images
RECENT = "recent"  # the evaluation slice: production images in the test split
SOURCE_COLUMN = "source"
PROVENANCE = ["request_id", "captured_at", "labeller", "model_version", "predicted"]
COLUMNS = ["path", "label", "sha256", SOURCE_COLUMN, *PROVENANCE]


def read_production(directory: Path) -> pd.DataFrame:
    """The inbox's manifest (no rows when there is none yet)."""
    path = directory / MANIFEST
    return load_manifest(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)


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
            meta = {key: row[key] for key in (SOURCE_COLUMN, *PROVENANCE) if pd.notna(row.get(key))}
            yield Sample(
                str(row["label"]), f"{PRODUCTION}-{row['request_id']}", file=directory / str(row["path"]), meta=meta
            )

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
