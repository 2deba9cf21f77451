"""Seeded stratified split and the prepared cache (images.npy + dataset.json + data_version)."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvops.data.manifest import import_source
from cvops.data.prepare import IMAGES, INFO, SPLITS, load_dataset_ref, load_split, prepare_dataset, split_dataset
from cvops.data.sources import folder_source
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


def _prepare(image_folder, root, params):
    import_source(folder_source(image_folder), root / "raw", progress=False)
    return prepare_dataset(root / "raw", root / "prepared", params.prepare, params.base.seed, progress=False)


def test_prepare_writes_images_and_info(image_folder, tmp_path, tiny_params):
    ref = _prepare(image_folder, tmp_path, tiny_params)
    size = tiny_params.prepare.image_size
    images = np.load(tmp_path / "prepared" / IMAGES)
    assert images.shape == (11, size, size, 3) and images.dtype == np.uint8
    assert json.loads((tmp_path / "prepared" / INFO).read_text())["data_version"] == ref.data_version
    assert load_dataset_ref(tmp_path / "prepared") == ref
    assert ref.class_names == ["cat", "dog"]
    assert sum(sum(c.values()) for c in ref.counts.values()) == 11


def test_data_version_tracks_the_image_bytes(image_folder, tmp_path, tiny_params):
    first = _prepare(image_folder, tmp_path, tiny_params).data_version
    assert _prepare(image_folder, tmp_path, tiny_params).data_version == first

    changed = image_folder / "dog" / "img_002.png"
    pixels = np.asarray(Image.open(changed)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(changed)
    assert _prepare(image_folder, tmp_path, tiny_params).data_version != first


def test_load_split_returns_aligned_images_labels_rows(image_folder, tmp_path, tiny_params):
    ref = _prepare(image_folder, tmp_path, tiny_params)
    total = 0
    for name in SPLITS:
        images, labels, rows = load_split(ref, name)
        assert len(images) == len(labels) == len(rows) == sum(ref.counts[name].values()) > 0
        assert [ref.class_names[i] for i in labels] == list(rows["label"])
        total += len(images)
    assert total == 11
