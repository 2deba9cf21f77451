"""Detection datasets: COCO JSON and YOLO txt folders read as they are, and importing a detection source into
data/raw as images/ plus two tables, the image manifest and the box table.

Boxes are (x1, y1, x2, y2) in pixels of the image as displayed (after its EXIF orientation), as COCO measures
them. Import keeps what it reads, good or bad, so that validation can name every bad annotation: a box whose
category the source does not declare keeps an empty label (and its `category` as written), and an annotation
whose image is not there keeps an empty `image` (and its `source_image`).
"""

import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pandas as pd
import yaml
from PIL import Image

from cvops.console import progress
from cvops.data.manifest import BOXES, MANIFEST, describe, encoded, sha256_bytes, swap_in
from cvops.data.sources import IMAGE_SUFFIXES, as_image, called
from cvops.errors import ConfigError, DataError

CLASSES = "classes.csv"  # the classes the source declares, in its order
IMAGES_DIR = "images"
COORDS = ["x1", "y1", "x2", "y2"]
BOX_COLUMNS = ["annotation", "image", "label", "category", *COORDS, "source_image"]
log = logging.getLogger(__name__)


@dataclass
class Box:
    """One annotation as the source wrote it, in pixels; `label` is empty when `category` is not declared."""

    annotation: str
    label: str
    category: str
    x1: float
    y1: float
    x2: float
    y2: float
    meta: dict[str, str | float | int] = field(default_factory=dict)


@dataclass
class Scene:
    """One image with its boxes (none: a background image); `name` is unique, `meta` goes into the manifest.

    Like a classification `Sample`: a composed scene is an `image` (written as PNG), a user's is a `file`
    (copied byte for byte)."""

    name: str
    boxes: list[Box]
    image: Image.Image | None = None
    file: Path | None = None
    source_image: str = ""
    meta: dict[str, str | float | int] = field(default_factory=dict)


@dataclass
class DetectionSource:
    """Classes, how many scenes (for progress), the scenes, and the annotations whose image is missing."""

    classes: list[str]
    total: int
    scenes: Iterator[Scene]
    orphans: list[tuple[str, Box]] = field(default_factory=list)  # (the image the source names, its box)


def _safe_stem(relative: str, taken: set[str]) -> str:
    """A portable, unique file stem for a user's image (its own path stays in the manifest's source_path)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(relative).with_suffix(""))).strip("._") or "image"
    while stem in taken:
        stem += "_"
    taken.add(stem)
    return stem


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {value!r} is not a finite number")
    return number


def coco_source(path: Path | None, annotations: Path | None = None) -> DetectionSource:
    """A COCO detection dataset: the JSON's `images`, `annotations` (bbox = [x, y, width, height] in pixels)
    and `categories`; image files relative to `path`. Crowd regions (iscrowd) and areas are kept as attributes."""
    if path is None or not path.is_dir():
        raise DataError(f"COCO image folder {path} not found: pass --path DIR (the folder the file_names are in)")
    annotations = annotations or path / "annotations.json"
    if not annotations.is_file():
        raise DataError(f"COCO annotation file {annotations} not found: pass --annotations FILE")
    try:
        coco = json.loads(annotations.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{annotations} is not valid JSON: {err}") from err
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(f"{annotations} is not a COCO detection file: it needs lists images, annotations, categories")
    try:
        names = {str(c["id"]): str(c["name"]) for c in coco["categories"]}
        images = {str(i["id"]): str(i["file_name"]) for i in coco["images"]}
    except (KeyError, TypeError) as err:
        raise DataError(
            f"{annotations}: a category or image lacks {err} (COCO: id and name, id and file_name)"
        ) from err
    by_image: dict[str, list[Box]] = {image: [] for image in images}
    orphans: list[tuple[str, Box]] = []
    for n, ann in enumerate(coco["annotations"]):
        where = f"{annotations.name}: annotation {ann.get('id', f'#{n}') if isinstance(ann, dict) else f'#{n}'}"
        if not isinstance(ann, dict) or not isinstance(ann.get("bbox"), list) or len(ann["bbox"]) != 4:
            raise DataError(f"{where} has no bbox [x, y, width, height]")
        x, y, w, h = (_number(v, where) for v in ann["bbox"])
        category = str(ann.get("category_id"))
        meta = {k: ann[k] for k in ("iscrowd", "area") if isinstance(ann.get(k), int | float)}
        box = Box(str(ann.get("id", n)), names.get(category, ""), category, x, y, x + w, y + h, meta)
        image = str(ann.get("image_id"))
        if image in by_image:
            by_image[image].append(box)
        else:
            orphans.append((f"image id {image}", box))
    present = {image: path / name for image, name in images.items() if (path / name).is_file()}
    for image in images.keys() - present.keys():  # listed, but no file: its annotations name a missing image
        orphans += [(images[image], box) for box in by_image.pop(image)]
    taken: set[str] = set()

    def scenes() -> Iterator[Scene]:
        for image, file in present.items():
            yield Scene(
                _safe_stem(images[image], taken),
                by_image[image],
                file=file,
                source_image=images[image],
                meta={"source_path": images[image], "coco_id": image},
            )

    return DetectionSource(sorted(set(names.values())), len(present), scenes(), orphans)


def _yolo_names(path: Path) -> list[str]:
    """Class names by index: data.yaml's `names` (a list, or a mapping of index to name), else classes.txt."""
    for candidate in (path / "data.yaml", path / "dataset.yaml"):
        if candidate.is_file():
            try:
                names = (yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}).get("names")
            except yaml.YAMLError as err:
                raise DataError(f"{candidate} is not valid YAML: {err}".splitlines()[0]) from err
            if isinstance(names, dict):
                names = [names[k] for k in sorted(names, key=int)]
            if isinstance(names, list) and names:
                return [str(n) for n in names]
            raise DataError(f"{candidate} has no `names:` list of classes")
    if (path / "classes.txt").is_file():
        return [
            line.strip() for line in (path / "classes.txt").read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    raise DataError(f"{path} names no classes: add data.yaml with `names: [...]` or classes.txt (one name a line)")


def _yolo_boxes(label_file: Path, relative: str, names: list[str], size: tuple[int, int]) -> list[Box]:
    """A YOLO label file's lines `class cx cy w h` (normalised to 0-1) as pixel boxes of an image `size`."""
    width, height = size
    boxes = []
    for number, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{relative}:{number}"
        if len(fields) != 5:
            raise DataError(
                f"{where}: expected 5 fields `class cx cy w h`, found {len(fields)} (segments are not boxes)"
            )
        category = fields[0]
        cx, cy, w, h = (_number(v, where) for v in fields[1:])
        index = int(category) if category.isdigit() else -1
        label = names[index] if 0 <= index < len(names) else ""
        boxes.append(
            Box(
                where,
                label,
                category,
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
            )
        )
    return boxes


def yolo_source(path: Path | None, annotations: Path | None = None) -> DetectionSource:
    """A YOLO dataset: DIR/images/**/<name>.<ext> with DIR/labels/**/<name>.txt beside in the same sub-path, and
    the class names in DIR/data.yaml (or classes.txt). An image without a label file has no boxes."""
    if path is None or not (path / IMAGES_DIR).is_dir():
        raise DataError(f"YOLO folder {path} has no images/: pass --path DIR with DIR/images and DIR/labels")
    names = _yolo_names(path)
    images_dir, labels_dir = path / IMAGES_DIR, path / "labels"
    files = sorted(f for f in images_dir.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    stems = {f.relative_to(images_dir).with_suffix("").as_posix() for f in files}
    orphans: list[tuple[str, Box]] = []
    for label_file in sorted(labels_dir.rglob("*.txt")) if labels_dir.is_dir() else []:
        stem = label_file.relative_to(labels_dir).with_suffix("").as_posix()
        if stem not in stems:  # boxes for an image that is not there (pixels unknown: NaN)
            relative = label_file.relative_to(path).as_posix()
            orphans += [(relative, box) for box in _yolo_boxes(label_file, relative, names, (math.nan, math.nan))]  # type: ignore[arg-type]
    taken: set[str] = set()

    def scenes() -> Iterator[Scene]:
        for file in files:
            relative = file.relative_to(images_dir)
            label_file = (labels_dir / relative).with_suffix(".txt")
            boxes = []
            if label_file.is_file():
                width, height, mode = describe(file.read_bytes())
                size = (width, height) if mode else (math.nan, math.nan)  # an unreadable image: validation names it
                boxes = _yolo_boxes(label_file, label_file.relative_to(path).as_posix(), names, size)  # type: ignore[arg-type]
            yield Scene(
                _safe_stem(relative.as_posix(), taken),
                boxes,
                file=file,
                source_image=relative.as_posix(),
                meta={"source_path": relative.as_posix()},
            )

    return DetectionSource(names, len(files), scenes(), orphans)


def _voc_image(xml: Path, filename: str, root: Path) -> Path | None:
    """Where a VOC file's <filename> is: JPEGImages/ (VOC, CVAT), beside the XML (LabelImg), or under `root`."""
    for candidate in (root / "JPEGImages" / filename, xml.parent / filename, root / filename):
        if candidate.is_file():
            return candidate
    return None


def _voc_boxes(tree: ElementTree.Element, where: str) -> list[Box]:
    """A VOC file's <object>s: <name> and <bndbox>, whose 1-based inclusive pixel indices xmin..xmax become
    the continuous box [xmin - 1, xmax] (the devkit's convention, as detectron2 reads it); <difficult>,
    <truncated> and <occluded> are kept as attributes."""
    boxes = []
    for number, item in enumerate(tree.iter("object"), start=1):
        name, bndbox = (item.findtext("name") or "").strip(), item.find("bndbox")
        at = f"{where}: object {number}"
        if not name or bndbox is None:
            raise DataError(f"{at} has no <name> or no <bndbox> (segments alone are not boxes)")
        xmin, ymin, xmax, ymax = (_number(bndbox.findtext(k), f"{at} {k}") for k in ("xmin", "ymin", "xmax", "ymax"))
        meta: dict[str, str | float | int] = {
            k: int(_number(v, f"{at} {k}")) for k in VOC_FLAGS if (v := item.findtext(k)) is not None
        }
        boxes.append(Box(f"{where}#{number}", name, name, xmin - 1, ymin - 1, xmax, ymax, meta))
    return boxes


VOC_FLAGS = ("difficult", "truncated", "occluded")


def voc_source(path: Path | None, annotations: Path | None = None) -> DetectionSource:
    """A Pascal VOC dataset (CVAT's and LabelImg's export): one XML file per image under DIR (or DIR/Annotations,
    `annotations` to name another folder), each naming its image (<filename>) and its boxes (<object>); the
    classes are every <name> met. An image without objects is a background image."""
    if path is None or not path.is_dir():
        raise DataError(f"Pascal VOC folder {path} not found: pass --path DIR (with Annotations/ and JPEGImages/)")
    folder = annotations or (path / "Annotations" if (path / "Annotations").is_dir() else path)
    files = sorted(folder.rglob("*.xml")) if folder.is_dir() else []
    if not files:
        raise DataError(f"no Pascal VOC .xml files under {folder}: pass --path DIR (or --annotations DIR)")
    found: list[tuple[str, Path, list[Box]]] = []  # (the image as the XML names it, its file, its boxes)
    orphans: list[tuple[str, Box]] = []
    for xml in files:
        where = xml.relative_to(folder).as_posix()
        try:
            tree = ElementTree.parse(xml).getroot()
        except ElementTree.ParseError as err:
            raise DataError(f"{where} is not valid XML: {err}") from err
        filename = (tree.findtext("filename") or "").strip()
        if not filename:
            raise DataError(f"{where} names no image: Pascal VOC needs <filename>")
        boxes = _voc_boxes(tree, where)
        image = _voc_image(xml, filename, path)
        if image is None:
            orphans += [(filename, box) for box in boxes]
        else:  # named as under DIR (an image beside an XML of another --annotations folder: by its name)
            found.append(
                (image.relative_to(path).as_posix() if image.is_relative_to(path) else image.name, image, boxes)
            )
    taken: set[str] = set()

    def scenes() -> Iterator[Scene]:
        for relative, file, boxes in found:
            yield Scene(
                _safe_stem(relative, taken), boxes, file=file, source_image=relative, meta={"source_path": relative}
            )

    classes = sorted({box.label for _, _, boxes in found for box in boxes} | {box.label for _, box in orphans})
    return DetectionSource(classes, len(found), scenes(), orphans)


def reader_detection_source(reference: str, path: Path | None = None) -> DetectionSource:
    """The user's reader (data.source `package.module:function`) for a detector, called with data.path: it
    yields (image, boxes) pairs, an image as `sources.as_image` takes it and its boxes as (label, x1, y1, x2, y2)
    in the image's pixels (none: a background image)."""
    scenes: list[Scene] = []
    for index, (image, found) in enumerate(called(reference, path)):
        where = f"data.source: {reference}: item {index}"
        pixels, file = as_image(image, where)
        boxes = []
        for k, box in enumerate(found if isinstance(found, list | tuple) else [found]):
            if not isinstance(box, list | tuple) or len(box) != 5 or not isinstance(box[0], str | int):
                raise ConfigError(f"{where}: box {k} is {box!r}: give (label, x1, y1, x2, y2) in pixels")
            x1, y1, x2, y2 = (_number(v, f"{where}: box {k}") for v in box[1:])
            boxes.append(Box(f"{index}-{k}", str(box[0]), str(box[0]), x1, y1, x2, y2))
        meta: dict[str, str | float | int] = {"source_path": str(file)} if file is not None else {}
        scenes.append(Scene(f"{index:06d}", boxes, image=pixels, file=file, meta=meta))
    if not scenes:
        raise DataError(f"data.source: {reference}({path}) yielded no images")
    classes = sorted({box.label for scene in scenes for box in scene.boxes})
    return DetectionSource(classes, len(scenes), iter(scenes))


def import_scenes(source: DetectionSource, raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write every scene under `raw_dir`/images/ with the image manifest and the box table beside them,
    swapped in whole when complete (a failed import leaves the previous `raw_dir` untouched)."""
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.importing-", dir=raw_dir.parent))
    try:
        (staging / IMAGES_DIR).mkdir()
        images, boxes = [], []
        for scene in progress(source.scenes, "import", total=source.total):
            data, suffix = encoded(scene.image, scene.file)
            relative = f"{IMAGES_DIR}/{scene.name}{suffix}"
            (staging / relative).write_bytes(data)
            width, height, mode = describe(data)
            images.append(
                {
                    "path": relative,
                    "sha256": sha256_bytes(data),
                    "width": width,
                    "height": height,
                    "mode": mode,
                    "boxes": len(scene.boxes),
                    **scene.meta,
                }
            )
            boxes += [_row(box, relative, scene.source_image) for box in scene.boxes]
        boxes += [_row(box, "", image) for image, box in source.orphans]
        if not images:
            raise DataError("the source holds no images: check --path (and --annotations)")
        if source.orphans:
            log.warning(
                "%d annotations name images that are not there, kept for `cvops data validate` to report",
                len(source.orphans),
            )
        manifest = pd.DataFrame(images)
        table = pd.DataFrame(boxes, columns=None if boxes else BOX_COLUMNS)
        manifest.to_csv(staging / MANIFEST, index=False)
        table.to_csv(staging / BOXES, index=False)
        pd.Series(source.classes, name="label").to_csv(staging / CLASSES, index=False)
        swap_in(staging, raw_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest, table


def _row(box: Box, image: str, source_image: str) -> dict[str, Any]:
    coords = dict(zip(COORDS, (box.x1, box.y1, box.x2, box.y2), strict=True))
    return {
        "annotation": box.annotation,
        "image": image,
        "label": box.label,
        "category": box.category,
        **coords,
        "source_image": source_image,
        **box.meta,
    }


def read_boxes(directory: Path) -> pd.DataFrame:
    """The box table of an imported, validated or prepared detection dataset, labels exactly as written."""
    path = directory / BOXES
    if not path.is_file():
        raise DataError(f"{directory} holds no {BOXES}: import a detection dataset (`cvops data import coco|yolo`)")
    text = {c: str for c in ("annotation", "image", "label", "category", "source_image")}
    boxes = pd.read_csv(path, dtype=text, keep_default_na=False, na_values={c: [""] for c in COORDS})
    missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}: import the dataset again")
    return boxes


def read_classes(directory: Path) -> list[str]:
    return pd.read_csv(directory / CLASSES, dtype=str, keep_default_na=False)["label"].tolist()


DETECTION_READERS: dict[str, Callable[..., DetectionSource]] = {
    "coco": coco_source,
    "yolo": yolo_source,
    "voc": voc_source,
}
