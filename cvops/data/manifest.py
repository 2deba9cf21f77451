"""Importing a source into data/raw/<class>/*.png with a manifest, atomically."""

import hashlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from cvops.data.sources import Source
from cvops.errors import DataError, NotInitializedError

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["path", "label", "sha256", "width", "height", "mode"]
log = logging.getLogger(__name__)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def import_source(source: Source, raw_dir: Path, *, progress: bool = True) -> pd.DataFrame:
    """Write every sample of `source` as PNG under `raw_dir` and a manifest beside them.

    The tree is written into a temporary sibling folder and swapped in only when complete,
    so a failed import leaves the previous `raw_dir` untouched and nothing half-written.
    """
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.importing-", dir=raw_dir.parent))
    try:
        rows, unreadable = [], []
        for sample in tqdm(source.samples, total=source.total, desc="import", unit="img", disable=None if progress else True):
            if sample.image is None:  # kept as it is, for validation to name or quarantine
                data, suffix = sample.unreadable or (b"", "")
                relative = Path(sample.label) / f"{sample.name}{suffix}"
                width, height, mode = 0, 0, ""
                unreadable.append(relative.as_posix())
            else:
                relative = Path(sample.label) / f"{sample.name}.png"
                buffer = io.BytesIO()
                sample.image.save(buffer, format="PNG")
                data = buffer.getvalue()
                (width, height), mode = sample.image.size, sample.image.mode
            (staging / sample.label).mkdir(exist_ok=True)
            (staging / relative).write_bytes(data)
            rows.append(
                {"path": relative.as_posix(), "label": sample.label, "sha256": sha256_bytes(data),
                 "width": width, "height": height, "mode": mode, **sample.meta}
            )  # fmt: skip
        if unreadable:
            log.warning(
                "%d files do not decode, kept for `cvops data validate` to report: %s",
                len(unreadable), ", ".join(unreadable[:5]),
            )  # fmt: skip
        if not rows:
            raise DataError("the source yielded no images: check the source and --limit-per-class")
        manifest = pd.DataFrame(rows)
        manifest.to_csv(staging / MANIFEST, index=False)
        _swap_in(staging, raw_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    counts = manifest["label"].value_counts().sort_index()
    log.info("imported %d images into %s: %s", len(manifest), raw_dir, {k: int(v) for k, v in counts.items()})
    return manifest


def _swap_in(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` with renames only, so readers see the old tree or the new one."""
    if target.exists():
        retired = target.with_name(f".{target.name}.retired")
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)


def read_manifest(raw_dir: Path) -> pd.DataFrame:
    """The manifest of an imported dataset, or a clear error when nothing was imported."""
    path = raw_dir / MANIFEST
    if not path.is_file():
        raise NotInitializedError(f"no imported dataset in {raw_dir}: run `cvops data import SOURCE` first")
    manifest = pd.read_csv(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing or manifest.empty:
        raise DataError(f"{path} is empty or lacks columns {missing}: import the dataset again")
    manifest["label"] = manifest["label"].astype(str)
    return manifest
