"""Seeded stratified split and resize of the imported dataset into a training-ready cache."""

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import BaseModel

from cvops import tasks
from cvops.config import HOLDOUT, PrepareParams, Project, Task
from cvops.console import progress
from cvops.data.manifest import BOXES, LABEL_BEFORE, MANIFEST, load_manifest, read_manifest
from cvops.data.preprocess import LEGACY_DECODER, LEGACY_RESIZE, Decoder, Resize, reduce_while_decoding, resize_image
from cvops.data.production import PRODUCTION, is_production, stable_split
from cvops.errors import DataError, DataInvalidError, NotInitializedError
from cvops.tasks.detection.boxes import CLASSES, read_boxes, read_classes

IMAGES = "images.npy"
INFO = "dataset.json"
SPLITS = ("train", "val", "test")
# DatasetRef's fields that came after datasets were first versioned: a dataset's file leaves one out while it holds
# its default, so that the dataset hashes to the same DVC version as before the field came
LATER_FIELDS = ("task", "resize", "decoder")


class DatasetRef(BaseModel):
    """What training needs to find a prepared dataset, and which data version it is.

    `data_version` is DVC's hash of the prepared data (from dvc.lock); empty outside DVC.
    """

    prepared_dir: str
    class_names: list[str]
    image_size: int
    counts: dict[str, dict[str, int]]  # images per split and class; for detection, boxes
    task: Task = "classification"
    sources: dict[str, dict[str, int]] = {}  # images in train, val and test per source (dataset, production), class
    data_version: str = ""
    resize: Resize = LEGACY_RESIZE  # prepare.resize: how the images became square (datasets before it: stretch)
    decoder: Decoder = LEGACY_DECODER  # prepare.decoder: how their JPEGs were decoded (datasets before it: full)

    @property
    def raw_dir(self) -> Path:
        """The originals the prepared images were resized from (`Project` keeps data/raw beside data/prepared)."""
        return Path(self.prepared_dir).parent / "raw"

    @property
    def unit(self) -> str:
        """What `counts` counts."""
        return tasks.task(self.task).unit

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def split_dataset(
    labels: pd.Series, val_fraction: float, test_fraction: float, seed: int, holdout_fraction: float = 0.0
) -> pd.Series:
    """Assign each row to train/val/test, per class (so every class reaches every split), reproducibly.

    Each class of n images gives round(n * fraction) images, at least one, to val and to test, and
    round(n * holdout_fraction) to no split (`holdout`) out of what train would get: val and test are the
    same with a holdout as without.
    """
    counts = labels.value_counts()
    if len(counts) < 2:
        raise DataError(f"need at least 2 classes to train a classifier, found {list(counts.index)}")
    too_small = counts[counts < 3]
    if not too_small.empty:
        raise DataError(
            f"classes {dict(too_small)} have fewer than 3 images: each split needs one; add images or drop the class"
        )
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=labels.index)
    for label in sorted(counts.index):
        rows = rng.permutation(labels.index[labels == label].to_numpy())
        n_test = max(1, round(len(rows) * test_fraction))
        n_val = max(1, round(len(rows) * val_fraction))
        split.loc[rows[:n_test]] = "test"
        split.loc[rows[n_test : n_test + n_val]] = "val"
        n_holdout = max(0, min(round(len(rows) * holdout_fraction), len(rows) - n_test - n_val - 1))  # train keeps one
        split.loc[rows[n_test + n_val : n_test + n_val + n_holdout]] = HOLDOUT
    return split


def assign_splits(manifest: pd.DataFrame, params: PrepareParams, seed: int) -> pd.Series:
    """The source's images split per class (`split_dataset`) of the source's label (a label people corrected
    moves no image); production images by a seeded hash of their content (`stable_split`), so each keeps its
    split in every later data version."""
    production = is_production(manifest)
    split = pd.Series("train", index=manifest.index)
    given = manifest[LABEL_BEFORE].fillna(manifest["label"]) if LABEL_BEFORE in manifest else manifest["label"]
    split[~production] = split_dataset(
        given[~production], params.val_fraction, params.test_fraction, seed, params.holdout_fraction
    )
    if production.any():
        split[production] = stable_split(
            manifest.loc[production, "sha256"], params.val_fraction, params.test_fraction, seed
        )
    return split


def check_split(manifest: pd.DataFrame) -> None:
    """After the split: no image twice within a split, and none shared between splits (leakage)."""
    copies = manifest[manifest.duplicated("sha256", keep=False)]
    if copies.empty:
        return
    spans = copies.groupby("sha256")["split"].nunique()
    leaked = copies[copies["sha256"].isin(spans[spans > 1].index)]["path"].tolist()
    doubled = copies[copies["sha256"].isin(spans[spans == 1].index)]["path"].tolist()
    kinds = (("shared between splits (leakage)", leaked), ("duplicated within a split", doubled))
    problems = [f"{what}: {', '.join(paths[:5])}" for what, paths in kinds if paths]
    raise DataInvalidError("identical images after the split, " + "; ".join(problems) + " — run `cvops data validate`")


@dataclass(frozen=True)
class _SplitDataset:
    """The validated dataset with its split column, and what its counts count (a detector's: its boxes)."""

    manifest: pd.DataFrame
    boxes: pd.DataFrame | None  # a detection dataset's
    labels: pd.Series  # the label of each counted image or box
    split_of: pd.Series  # the split of each counted image or box
    class_names: list[str]

    @property
    def unit(self) -> str:
        """What its counts count: its boxes when it has a box table, else its images."""
        return "images" if self.boxes is None else "boxes"

    def counts(self) -> dict[str, dict[str, int]]:
        """Images (a detector's: boxes) per split and class."""
        return {
            split: {c: int(n) for c, n in self.labels[self.split_of == split].value_counts().items()}
            for split in SPLITS
        }


def prepare_dataset(
    validated_dir: Path,
    raw_dir: Path,
    prepared_dir: Path,
    params: PrepareParams,
    seed: int,
    task: str | None = None,
) -> DatasetRef:
    """Split and resize the validated images into `prepared_dir` (manifest with a split column + images.npy) for
    `task` (params.task; None: the registered task that counts what the data holds, images or boxes)."""
    if not (validated_dir / MANIFEST).is_file():
        raise NotInitializedError(f"no validated dataset in {validated_dir}: run `cvops data validate` first")
    dataset = _split_validated(validated_dir, params, seed)
    check_split(dataset.manifest)
    served = _served_task(dataset, task)
    images = resized_images(dataset.manifest["path"], raw_dir, params.image_size, params.resize, params.decoder)
    ref = DatasetRef(
        prepared_dir=str(prepared_dir.resolve()),
        class_names=dataset.class_names,
        image_size=params.image_size,
        resize=params.resize,
        decoder=params.decoder,
        counts=dataset.counts(),
        sources={} if dataset.boxes is not None else _sources(dataset.manifest),  # a box table has no production
        task=served,
    )
    _write_prepared(ref, dataset, images, validated_dir, prepared_dir)
    return ref


def _served_task(dataset: _SplitDataset, named: str | None) -> str:
    """The task a prepared dataset serves: `named`, which must count what the validated data holds (data imported
    for another task is imported again first), or else the first registered task that counts it."""
    if named is None:
        return next(name for name in tasks.task_names() if tasks.task(name).unit == dataset.unit)
    if tasks.task(named).unit != dataset.unit:
        raise DataError(
            f"task {named} learns from {tasks.task(named).unit}, but the validated data holds {dataset.unit}: "
            "run `cvops data import` for this task, then `cvops data validate`"
        )
    return named


def _split_validated(validated_dir: Path, params: PrepareParams, seed: int) -> _SplitDataset:
    """The validated manifest with each image's split; a detection dataset's by a seeded hash of each image, so
    an image keeps its split as the dataset grows."""
    manifest = read_manifest(validated_dir)
    if not (validated_dir / BOXES).is_file():
        manifest["split"] = assign_splits(manifest, params, seed)
        return _SplitDataset(manifest, None, manifest["label"], manifest["split"], sorted(manifest["label"].unique()))
    boxes = read_boxes(validated_dir)
    manifest["split"] = stable_split(manifest["sha256"], params.val_fraction, params.test_fraction, seed)
    labels = boxes["label"].where(boxes["image"].isin(manifest["path"]))
    split_of = boxes["image"].map(manifest.set_index("path")["split"])
    return _SplitDataset(manifest, boxes, labels, split_of, sorted(read_classes(validated_dir)))


def resized_images(paths: pd.Series, raw_dir: Path, size: int, rule: Resize, decoder: Decoder) -> np.ndarray:
    """The raw images at `paths`, decoded and resized as training reads them: (N, size, size, 3) uint8."""
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, rel in enumerate(progress(paths, "prepare")):
        with Image.open(raw_dir / rel) as image:
            reduce_while_decoding(image, size, decoder)
            images[i] = resize_image(image, size, rule)
    return images


def _sources(manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Images in train, val and test per source (dataset, production) and class."""
    used = manifest[manifest["split"].isin(SPLITS)]
    origin = np.where(is_production(used), PRODUCTION, "dataset")
    return {
        name: {c: int(n) for c, n in used.loc[origin == name, "label"].value_counts().sort_index().items()}
        for name in sorted(set(origin))
    }


def _write_prepared(
    ref: DatasetRef, dataset: _SplitDataset, images: np.ndarray, validated_dir: Path, prepared_dir: Path
) -> None:
    """Write the prepared dataset into a staging folder renamed to `prepared_dir`: it appears complete or not at
    all."""
    prepared_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prepared_dir.name}.preparing-", dir=prepared_dir.parent))
    try:
        dataset.manifest.to_csv(staging / MANIFEST, index=False)
        np.save(staging / IMAGES, images)
        if dataset.boxes is not None:
            dataset.boxes.to_csv(staging / BOXES, index=False)
            shutil.copy2(validated_dir / CLASSES, staging / CLASSES)
        # Location-free, so the same data hashes to the same DVC version in any checkout
        at_default = {name for name in LATER_FIELDS if getattr(ref, name) == DatasetRef.model_fields[name].default}
        info = ref.model_dump_json(indent=2, exclude={"prepared_dir", "data_version"} | at_default)
        (staging / INFO).write_text(info, encoding="utf-8")
        if prepared_dir.exists():
            shutil.rmtree(prepared_dir)
        staging.rename(prepared_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def prepare_configured(project: Project) -> DatasetRef:
    """What the DVC `prepare` stage runs: split and resize the validated data as params.yaml says."""
    params = project.params()
    return prepare_dataset(
        project.validated_dir, project.raw_dir, project.prepared_dir, params.prepare, params.base.seed, params.task
    )


def load_dataset_ref(prepared_dir: Path, data_version: str = "") -> DatasetRef:
    info = prepared_dir / INFO
    if not info.is_file():
        raise NotInitializedError(f"no prepared dataset in {prepared_dir}: run `cvops data prepare` first")
    fields = json.loads(info.read_text(encoding="utf-8"))
    return DatasetRef(**fields, prepared_dir=str(prepared_dir.resolve()), data_version=data_version)


def load_split_images(ref: DatasetRef, split: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Images (N,H,W,3 uint8) and manifest rows of one split, of either task."""
    prepared = Path(ref.prepared_dir)
    manifest = load_manifest(prepared / MANIFEST)
    rows = manifest.index[manifest["split"] == split].to_numpy()
    images = np.load(prepared / IMAGES, mmap_mode="r")[rows]
    return np.ascontiguousarray(images), manifest.loc[rows].reset_index(drop=True)


def load_split(ref: DatasetRef, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Images (N,H,W,3 uint8), integer labels and manifest rows of one split."""
    images, rows = load_split_images(ref, split)
    lookup = {name: i for i, name in enumerate(ref.class_names)}
    return images, rows["label"].map(lookup).to_numpy(dtype=np.int64), rows
