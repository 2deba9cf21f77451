"""Seeded stratified split and the prepared cache (images.npy + dataset.json + manifest)."""

import numpy as np
import pandas as pd
import pytest

from cvops.config import ValidateParams
from cvops.data.manifest import import_source
from cvops.data.prepare import IMAGES, INFO, SPLITS, load_dataset_ref, load_split, prepare_dataset, split_dataset
from cvops.data.sources import folder_source
from cvops.data.validation import validate_dataset
from cvops.errors import DataError

LABELS = pd.Series(["cat"] * 40 + ["dog"] * 30 + ["fox"] * 20)


def test_split_is_stratified_disjoint_and_sized():
    split = split_dataset(LABELS, 0.2, 0.1, seed=1)
    assert split.index.equals(LABELS.index)  # every row in exactly one split
    for name, fraction in (("val", 0.2), ("test", 0.1)):
        assert set(LABELS[split == name]) == {"cat", "dog", "fox"}
        assert abs((split == name).sum() - fraction * len(LABELS)) <= 3
    assert set(LABELS[split == "train"]) == {"cat", "dog", "fox"}
    assert set(split) == set(SPLITS)


def test_split_is_reproducible_from_the_seed():
    assert split_dataset(LABELS, 0.15, 0.15, seed=7).equals(split_dataset(LABELS, 0.15, 0.15, seed=7))
    assert not split_dataset(LABELS, 0.15, 0.15, seed=7).equals(split_dataset(LABELS, 0.15, 0.15, seed=8))


def test_class_with_fewer_than_three_images():
    with pytest.raises(DataError, match="dog"):
        split_dataset(pd.Series(["cat"] * 10 + ["dog"] * 2), 0.15, 0.15, seed=0)


def test_single_class():
    with pytest.raises(DataError, match="2 classes"):
        split_dataset(pd.Series(["cat"] * 10), 0.15, 0.15, seed=0)


@pytest.mark.parametrize("others", [3, 10, 50])
def test_smallest_accepted_class_reaches_every_split(others):
    labels = pd.Series(["rare"] * 3 + ["common"] * others)
    split = split_dataset(labels, 0.15, 0.15, seed=0)
    assert all("rare" in set(labels[split == name]) for name in SPLITS)


def _prepare(image_folder, root, params, prepared="prepared"):
    import_source(folder_source(image_folder), root / "raw")
    report = validate_dataset(root / "raw", root / "validated", ValidateParams(min_per_class=1))
    assert report.passed
    return prepare_dataset(root / "validated", root / "raw", root / prepared, params.prepare, params.base.seed)


def test_prepare_writes_images_and_info(image_folder, tmp_path, tiny_params):
    ref = _prepare(image_folder, tmp_path, tiny_params)
    size = tiny_params.prepare.image_size
    images = np.load(tmp_path / "prepared" / IMAGES)
    assert images.shape == (11, size, size, 3) and images.dtype == np.uint8
    assert load_dataset_ref(tmp_path / "prepared") == ref
    assert ref.class_names == ["cat", "dog"]
    assert sum(sum(c.values()) for c in ref.counts.values()) == 11


def test_prepared_bytes_are_reproducible_and_location_free(image_folder, tmp_path, tiny_params):
    """DVC's data version hashes these files: the same data must give the same bytes anywhere."""
    _prepare(image_folder, tmp_path / "a", tiny_params)
    _prepare(image_folder, tmp_path / "b", tiny_params, prepared="elsewhere")
    for name in (INFO, IMAGES, "manifest.csv"):
        assert (tmp_path / "a" / "prepared" / name).read_bytes() == (tmp_path / "b" / "elsewhere" / name).read_bytes()


def test_load_split_returns_aligned_images_labels_rows(image_folder, tmp_path, tiny_params):
    ref = _prepare(image_folder, tmp_path, tiny_params)
    total = 0
    for name in SPLITS:
        images, labels, rows = load_split(ref, name)
        assert len(images) == len(labels) == len(rows) == sum(ref.counts[name].values()) > 0
        assert [ref.class_names[i] for i in labels] == list(rows["label"])
        total += len(images)
    assert total == 11
