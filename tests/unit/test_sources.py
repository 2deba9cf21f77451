"""Image sources: bundled digits, the user's folders, Fashion-MNIST idx files."""

import gzip
import re
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvops.data.sources import FASHION_MNIST_CLASSES, digits_source, fashion_mnist_source, folder_source
from cvops.errors import DataError


def test_digits_has_ten_classes_and_limit_caps_each():
    source = digits_source(limit=3)
    counts = Counter(sample.label for sample in source.samples)
    assert source.classes == [str(d) for d in range(10)]
    assert counts == {str(d): 3 for d in range(10)}
    assert source.total == 30


def test_folder_source_lists_every_image_file_as_it_is(image_folder):
    source = folder_source(image_folder)
    samples = list(source.samples)
    assert source.classes == ["cat", "dog"]
    assert Counter(s.label for s in samples) == {"cat": 6, "dog": 5}
    assert source.total == len(samples)
    assert all(s.image is None and s.file.parent.name == s.label for s in samples)  # the file, not a decoding
    assert {s.meta["source_path"] for s in samples} >= {"cat/img_000.png", "dog/img_004.png"}


def test_class_names_are_kept_exactly(tmp_path):
    """Spaces and non-ASCII letters are the user's labels: no two names collapse into one."""
    for name in ("große Teile", "grosse_Teile", "café crème", "NA"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "a b é.png")
    source = folder_source(tmp_path)
    samples = list(source.samples)
    assert source.classes == sorted(["große Teile", "grosse_Teile", "café crème", "NA"])
    assert {s.label for s in samples} == set(source.classes)
    assert {s.name for s in samples} == {"a_b"}  # file names (not labels) are made portable; the path is kept
    assert {s.meta["source_path"] for s in samples} >= {"große Teile/a b é.png"}


def test_folder_limit_per_class(image_folder):
    assert Counter(s.label for s in folder_source(image_folder, limit=2).samples) == {"cat": 2, "dog": 2}


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nope"))):
        folder_source(tmp_path / "nope")


def test_folder_without_class_folders(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")  # images directly in the folder, no classes
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        folder_source(tmp_path)


def test_class_folder_without_images(image_folder):
    (image_folder / "bird").mkdir()
    (image_folder / "bird" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=re.escape(str(image_folder / "bird"))):
        folder_source(image_folder)


def _write_idx(path: Path, array: np.ndarray, truncate: int = 0) -> None:
    magic = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    data = magic + dims + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data[: len(data) - truncate])


def _write_fashion(directory: Path, n_train: int = 4, n_test: int = 3, truncate: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}_labels"] = np.arange(n, dtype=np.uint8) % 10
        _write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", arrays[f"{prefix}_images"], truncate)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", arrays[f"{prefix}_labels"])
    return arrays


def test_fashion_mnist_reads_train_and_test(tmp_path):
    arrays = _write_fashion(tmp_path)
    source = fashion_mnist_source(tmp_path)
    samples = list(source.samples)
    assert source.total == len(samples) == 7
    train = [s for s in samples if s.meta["original_split"] == "train"]
    test = [s for s in samples if s.meta["original_split"] == "t10k"]
    assert [s.label for s in train] == [FASHION_MNIST_CLASSES[t] for t in arrays["train_labels"]]
    assert [s.label for s in test] == [FASHION_MNIST_CLASSES[t] for t in arrays["t10k_labels"]]
    assert np.array_equal(np.asarray(test[2].image), arrays["t10k_images"][2])


@pytest.mark.parametrize("truncate", [100, 28 * 28 * 4 + 6])
def test_truncated_idx_file(tmp_path, truncate):
    _write_fashion(tmp_path, truncate=truncate)  # 100: cut in the pixels; the other: cut in the header
    with pytest.raises(DataError, match="images-idx3-ubyte"):
        fashion_mnist_source(tmp_path)
