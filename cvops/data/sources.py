"""Image sources that `cvops data import` reads: bundled datasets and the user's own folders.

Each source yields `Sample`s; a source is read lazily so that import can show progress without holding
the whole dataset in memory. A user's files are imported as they are (their bytes, not a re-encoding):
validation then judges the real files, and a JPEG dataset does not grow into PNGs.
"""

import gzip
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvops.errors import ConfigError, CvopsError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
FASHION_MNIST_CLASSES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Sample:
    """One image with its class; `name` is unique within the class, `meta` goes into the manifest.

    A bundled dataset's sample is an `image`, written as PNG. A user's sample is a `file`, copied byte for
    byte whatever it holds: a file that does not decode is kept for validation to name (or quarantine).
    """

    label: str
    name: str
    image: Image.Image | None = None
    file: Path | None = None
    meta: dict[str, str | float | int] = field(default_factory=dict)


@dataclass
class Source:
    """A readable source: how many samples it holds (for progress) and the samples themselves."""

    classes: list[str]
    total: int
    samples: Iterator[Sample]


def _cap(labels: list[str], limit: int | None) -> list[int]:
    """Indices of the first `limit` samples of each class (all when limit is None)."""
    seen: dict[str, int] = {}
    keep = []
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if limit is None or seen[label] <= limit:
            keep.append(i)
    return keep


def digits_source(path: Path | None = None, limit: int | None = None) -> Source:
    """scikit-learn's 1,797 8x8 grey digits (ships with scikit-learn; BSD-3)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = [str(t) for t in bunch.target]
    keep = _cap(labels, limit)
    pixels = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.uint8)

    def samples() -> Iterator[Sample]:
        for i in keep:
            yield Sample(labels[i], f"digit_{i:05d}", Image.fromarray(pixels[i], mode="L"))

    return Source(sorted(set(labels)), len(keep), samples())


def elpv_source(path: Path | None = None, limit: int | None = None) -> Source:
    """ELPV solar-cell electroluminescence images (PyPI elpv-dataset; CC BY-NC-SA 4.0).

    Binary task: defective when the experts' defect probability is >= 0.5.
    """
    from elpv_dataset.utils import load_dataset

    images, probabilities, cell_types = load_dataset()
    labels = ["defective" if p >= 0.5 else "functional" for p in probabilities]
    keep = _cap(labels, limit)

    def samples() -> Iterator[Sample]:
        for i in keep:
            meta: dict[str, str | float | int] = {
                "cell_type": str(cell_types[i]),
                "defect_probability": round(float(probabilities[i]), 4),
            }
            yield Sample(labels[i], f"cell_{i:04d}", Image.fromarray(np.asarray(images[i], dtype=np.uint8)), meta=meta)

    return Source(sorted(set(labels)), len(keep), samples())


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as err:  # gzip.BadGzipFile included
        raise DataError(f"cannot read {path}: {err}") from err
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path} is not an idx file of unsigned bytes (see the Fashion-MNIST format)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated: its header is incomplete")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(shape))} bytes of data, found {body.size}")
    return body.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{directory} has no {stem}(.gz): point --path at the Fashion-MNIST idx files "
        "(apt-get install dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist)"
    )


def fashion_mnist_source(path: Path | None = None, limit: int | None = None) -> Source:
    """Fashion-MNIST from its standard idx(.gz) files: train and test sets merged, 70,000 images."""
    directory = path or FASHION_MNIST_DIR
    if not directory.is_dir():
        raise DataError(f"Fashion-MNIST directory {directory} not found: install dataset-fashion-mnist or pass --path")
    parts = []
    for prefix in ("train", "t10k"):
        images = _read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"))
        targets = _read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(targets) or images.ndim != 3:
            raise DataError(f"{directory}: {prefix} images and labels do not match ({len(images)} vs {len(targets)})")
        if targets.max(initial=0) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{directory}: {prefix} labels hold class {targets.max()}, Fashion-MNIST has 10 classes")
        parts.append((prefix, images, targets))
    index = [(prefix, i) for prefix, images, _ in parts for i in range(len(images))]
    by_prefix = {prefix: (images, targets) for prefix, images, targets in parts}
    labels = [FASHION_MNIST_CLASSES[by_prefix[p][1][i]] for p, i in index]
    keep = _cap(labels, limit)

    def samples() -> Iterator[Sample]:
        for k in keep:
            prefix, i = index[k]
            image = Image.fromarray(by_prefix[prefix][0][i], mode="L")
            yield Sample(labels[k], f"{prefix}_{i:05d}", image, meta={"original_split": prefix})

    return Source(list(FASHION_MNIST_CLASSES), len(keep), samples())


def _safe_name(text: str) -> str:
    """A file name made of portable characters (the user's name stays in the manifest's source_path)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def class_name(directory: Path) -> str:
    """A class folder's name, kept exactly (any Unicode, spaces): it is the label the model answers with.

    It names a folder under data/raw as it is; only a name that cannot be stored as text is refused.
    """
    try:
        directory.name.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"class folder {directory} has a name that is not valid UTF-8: rename it") from None
    return directory.name


def folder_source(path: Path | None = None, limit: int | None = None) -> Source:
    """The user's ImageFolder tree, DIR/<class>/<image>: each image file is imported as it is."""
    if path is None:
        raise DataError("the folder source needs --path DIR (a folder with one sub-folder of images per class)")
    if not path.is_dir():
        raise DataError(f"folder {path} does not exist: pass --path to a folder with one sub-folder per class")
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"folder {path} has no class sub-folders: lay it out as {path}/<class>/<image>.png")
    files: list[tuple[str, str, Path]] = []  # (label, name unique in the class, file)
    for class_dir in class_dirs:
        images = sorted(f for f in class_dir.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        label = class_name(class_dir)
        names: set[str] = set()
        for file in images:
            name = _safe_name(str(file.relative_to(class_dir).with_suffix("")))
            while name in names:  # a.png and a.jpg side by side
                name += "_"
            names.add(name)
            files.append((label, name, file))
    keep = _cap([label for label, _, _ in files], limit)

    def samples() -> Iterator[Sample]:
        for i in keep:
            label, name, file = files[i]
            yield Sample(label, name, file=file, meta={"source_path": file.relative_to(path).as_posix()})

    return Source(sorted({label for label, _, _ in files}), len(keep), samples())


def called(reference: str, path: Path | None) -> Iterator[tuple[Any, Any]]:
    """The items the user's reader `reference` (data.source) yields when called with data.path, each checked to
    be a pair (an image, and its label or boxes); a ConfigError naming data.source for anything else."""
    from cvops.references import load_function

    read = load_function(reference, "data.source")
    try:
        items = read(path)
        for index, item in enumerate(items):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ConfigError(
                    f"data.source: {reference} yielded a {type(item).__name__} as item {index}: yield pairs "
                    "(image, label) for a classifier, (image, [(label, x1, y1, x2, y2), ...]) for a detector"
                )
            yield item[0], item[1]
    except CvopsError:
        raise
    except Exception as err:  # the user's code, any error
        raise ConfigError(
            f"data.source: {reference}({path}) failed: {type(err).__name__}: {err}".splitlines()[0]
        ) from err


def as_image(image: Any, where: str) -> tuple[Image.Image | None, Path | None]:
    """A reader's image as a Sample or Scene holds it: a file path (imported as it is), or a PIL image or an
    (H, W) / (H, W, 3) uint8 array (written as PNG)."""
    if isinstance(image, str | Path):
        if not Path(image).is_file():
            raise DataError(f"{where}: image file {image} not found")
        return None, Path(image)
    if isinstance(image, Image.Image):
        return image, None
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and (image.ndim == 2 or image.shape[-1] == 3):
        return Image.fromarray(image), None
    raise ConfigError(
        f"{where}: the image is a {type(image).__name__}: give a file path, a PIL image or an (H, W[, 3]) uint8 array"
    )


def reader_source(reference: str, path: Path | None = None, limit: int | None = None) -> Source:
    """The user's reader (data.source `package.module:function`), called with data.path: it yields (image,
    label) pairs, an image as `as_image` takes it and a label as text (a number is its text)."""
    samples: list[Sample] = []
    names: dict[str, set[str]] = {}
    for index, (image, label) in enumerate(called(reference, path)):
        where = f"data.source: {reference}: item {index}"
        if not isinstance(label, str | int) or isinstance(label, bool) or not str(label).strip():
            raise ConfigError(f"{where}: the label is {label!r}: give the class name as text")
        label = str(label)
        pixels, file = as_image(image, where)
        taken = names.setdefault(label, set())
        name = _safe_name(file.stem) if file is not None else f"{index:06d}"
        while name in taken:
            name += "_"
        taken.add(name)
        meta: dict[str, str | float | int] = {"source_path": str(file)} if file is not None else {}
        samples.append(Sample(label, name, image=pixels, file=file, meta=meta))
    if not samples:
        raise DataError(f"data.source: {reference}({path}) yielded no images")
    keep = _cap([sample.label for sample in samples], limit)
    return Source(sorted(names), len(keep), (samples[i] for i in keep))


def read_source(source: str, path: Path | None, limit: int | None) -> Source:
    """The classification source data.source names: a built-in one, or the user's reader."""
    from cvops.config import is_reference

    return reader_source(source, path, limit) if is_reference(source) else SOURCE_READERS[source](path, limit)


SOURCE_READERS: dict[str, Callable[[Path | None, int | None], Source]] = {
    "elpv": elpv_source,
    "digits": digits_source,
    "fashion-mnist": fashion_mnist_source,
    "folder": folder_source,
}
