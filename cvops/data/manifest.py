"""Importing a source into data/raw/<class>/ with a manifest, atomically."""

import hashlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from PIL import Image

from cvops.console import progress
from cvops.data.preprocess import image_mode, oriented_size
from cvops.data.sources import Source
from cvops.errors import DataError, NotInitializedError

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["path", "label", "sha256", "width", "height", "mode"]
IMAGE_COLUMNS = [c for c in MANIFEST_COLUMNS if c != "label"]  # a detection manifest's: its labels are its boxes
LABEL_BEFORE = "label_before"  # a reviewed image's label in its source (cvops.data.production: corrections)
BOXES = "boxes.csv"  # a detection dataset's box table, beside its manifest (cvops.tasks.detection.boxes)
log = logging.getLogger(__name__)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encoded(image: Image.Image | None, file: Path | None) -> tuple[bytes, str]:
    """The bytes to store and their suffix: the user's file as it is, a bundled or composed image as PNG."""
    if file is not None:
        return file.read_bytes(), file.suffix
    if image is None:
        raise ValueError("a sample holds neither an image nor a file")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), ".png"


def describe(data: bytes) -> tuple[int, int, str]:
    """Width and height as displayed, and the mode, from the header alone; (0, 0, "") when it does not open
    (validation decodes every file fully and names the ones that fail)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return *oriented_size(image), image_mode(image)
    except Exception:  # PIL raises many types for bad files; validation reports them
        return 0, 0, ""


def import_source(source: Source, raw_dir: Path, reviewed: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """Write every sample of `source` under `raw_dir`/<class>/ and a manifest beside them; an image `reviewed`
    names (by sha256: its label and the review's provenance) goes under its reviewed label, its source label
    kept as `label_before`.

    The tree is written into a temporary sibling folder and swapped in only when complete,
    so a failed import leaves the previous `raw_dir` untouched and nothing half-written.
    """
    if MANIFEST in source.classes:
        raise DataError(f"a class is named {MANIFEST}, like the import's manifest: rename its folder")
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.importing-", dir=raw_dir.parent))
    try:
        rows, unreadable = [], []
        for sample in progress(source.samples, "import", total=source.total):
            data, suffix = encoded(sample.image, sample.file)
            digest = sha256_bytes(data)
            review = (reviewed or {}).get(digest)
            label = review["label"] if review else sample.label
            relative = Path(label) / f"{sample.name}{suffix}"
            width, height, mode = describe(data)
            if not mode:
                unreadable.append(relative.as_posix())
            (staging / label).mkdir(exist_ok=True)
            (staging / relative).write_bytes(data)
            rows.append(
                {
                    "path": relative.as_posix(),
                    "label": label,
                    "sha256": digest,
                    "width": width,
                    "height": height,
                    "mode": mode,
                    **sample.meta,
                    **(
                        {LABEL_BEFORE: sample.label} | {k: v for k, v in review.items() if k != "label"}
                        if review
                        else {}
                    ),
                }
            )
        if unreadable:
            log.warning(
                "%d files do not open as images, kept for `cvops data validate` to report: %s",
                len(unreadable),
                ", ".join(unreadable[:5]),
            )
        if not rows:
            raise DataError("the source yielded no images: check the source and --limit-per-class")
        manifest = pd.DataFrame(rows)
        manifest.to_csv(staging / MANIFEST, index=False)
        swap_in(staging, raw_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def swap_in(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` with renames only, so readers see the old tree or the new one."""
    if target.exists():
        retired = target.with_name(f".{target.name}.retired")
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)


def load_manifest(path: Path) -> pd.DataFrame:
    """A manifest CSV with its labels exactly as written: a class named NA or None stays a name."""
    return pd.read_csv(path, dtype={"label": str, LABEL_BEFORE: str}, keep_default_na=False, na_values=[""])


def read_manifest(raw_dir: Path) -> pd.DataFrame:
    """The manifest of an imported dataset, or a clear error when nothing was imported."""
    path = raw_dir / MANIFEST
    if not path.is_file():
        raise NotInitializedError(f"no imported dataset in {raw_dir}: run `cvops data import SOURCE` first")
    manifest = load_manifest(path)
    required = IMAGE_COLUMNS if (raw_dir / BOXES).is_file() else MANIFEST_COLUMNS  # detection: boxes hold labels
    missing = [c for c in required if c not in manifest.columns]
    if missing or manifest.empty:
        raise DataError(f"{path} is empty or lacks columns {missing}: import the dataset again")
    return manifest
