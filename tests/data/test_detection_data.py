"""Detection data on real files: COCO and YOLO imports agree box for box, every kind of bad annotation is named
(annotation id and image file) in its check, quarantine keeps only whole good images, and prepare splits
images with their boxes."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvops.config import PrepareParams, ValidateParams
from cvops.data.manifest import read_manifest
from cvops.data.prepare import load_dataset_ref, prepare_dataset
from cvops.data.validation import validate_dataset, write_reports
from cvops.errors import DataError
from cvops.tasks.detection.boxes import COORDS, coco_source, import_scenes, read_boxes, voc_source, yolo_source
from cvops.tasks.detection.scenes import digit_scenes_source
from tests.images import write_coco

LENIENT = ValidateParams(min_per_class=1, max_imbalance_ratio=100.0)


def write_yolo(scenes, root: Path) -> None:
    """Scenes as a YOLO dataset: images/train/, labels/train/ (normalised cx cy w h) and data.yaml."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for scene in scenes:
        scene.image.save(root / "images" / "train" / f"{scene.name}.png")
        w, h = scene.image.size
        lines = [
            f"{b.label} {(b.x1 + b.x2) / 2 / w:.10f} {(b.y1 + b.y2) / 2 / h:.10f} {(b.x2 - b.x1) / w:.10f} "
            f"{(b.y2 - b.y1) / h:.10f}"
            for b in scene.boxes
        ]
        (root / "labels" / "train" / f"{scene.name}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("names: {" + ", ".join(f"{d}: '{d}'" for d in range(10)) + "}\n")


def write_voc(scenes, root: Path) -> None:
    """Scenes as Pascal VOC: the first half as VOC and CVAT lay it out (Annotations/*.xml, JPEGImages/), the
    rest as LabelImg does (each XML beside its image); boxes as 1-based inclusive pixel indices."""
    for i, scene in enumerate(scenes):
        beside = i >= len(scenes) // 2
        images = root / ("labelimg" if beside else "JPEGImages")
        xml_dir = images if beside else root / "Annotations"
        images.mkdir(parents=True, exist_ok=True)
        xml_dir.mkdir(parents=True, exist_ok=True)
        scene.image.save(images / f"{scene.name}.png")
        objects = "".join(
            f"<object><name>{b.label}</name><difficult>{int(k == 0)}</difficult><bndbox><xmin>{b.x1 + 1:g}</xmin>"
            f"<ymin>{b.y1 + 1:g}</ymin><xmax>{b.x2:g}</xmax><ymax>{b.y2:g}</ymax></bndbox></object>"
            for k, b in enumerate(scene.boxes)
        )
        w, h = scene.image.size
        (xml_dir / f"{scene.name}.xml").write_text(
            f"<annotation><folder>x</folder><filename>{scene.name}.png</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"
        )


@pytest.fixture(scope="module")
def scenes():
    return list(digit_scenes_source(12, seed=7).scenes)


def comparable(raw: Path) -> pd.DataFrame:
    """Boxes keyed by image content (file names differ between the formats), in a fixed order."""
    boxes, manifest = read_boxes(raw), read_manifest(raw)
    boxes["sha256"] = boxes["image"].map(manifest.set_index("path")["sha256"])
    return boxes.sort_values(["sha256", "label", "x1", "y1"])[["sha256", "label", *COORDS]].reset_index(drop=True)


def test_coco_yolo_and_voc_imports_round_trip_the_same_boxes(scenes, tmp_path):
    coco_file = write_coco(scenes, tmp_path / "coco")
    write_yolo(scenes, tmp_path / "yolo")
    write_voc(scenes, tmp_path / "voc")
    import_scenes(coco_source(tmp_path / "coco", coco_file), tmp_path / "raw-coco")
    import_scenes(yolo_source(tmp_path / "yolo"), tmp_path / "raw-yolo")
    voc_source(tmp_path / "voc")  # Annotations/ found by itself; the LabelImg half needs the whole folder:
    import_scenes(voc_source(tmp_path / "voc", tmp_path / "voc"), tmp_path / "raw-voc")

    expected = pd.DataFrame(
        [{"label": b.label, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2} for s in scenes for b in s.boxes]
    )
    coco, yolo = comparable(tmp_path / "raw-coco"), comparable(tmp_path / "raw-yolo")
    assert len(coco) == len(yolo) == len(expected) > len(scenes)
    pd.testing.assert_frame_equal(coco, yolo, atol=1e-6, check_exact=False)
    pd.testing.assert_frame_equal(coco, comparable(tmp_path / "raw-voc"))  # VOC's integers: exact
    assert read_boxes(tmp_path / "raw-voc")["difficult"].sum() == len(scenes)  # VOC's flags kept, one a scene
    key = ["label", *COORDS]
    assert sorted(map(tuple, coco[key].to_numpy())) == sorted(map(tuple, expected[key].to_numpy()))
    # the user's files as they are, and the source's own paths kept
    manifest = read_manifest(tmp_path / "raw-yolo")
    assert set(manifest["source_path"]) == {f"train/{s.name}.png" for s in scenes}
    assert (tmp_path / "raw-yolo" / manifest["path"][0]).read_bytes() == (
        tmp_path / "yolo" / "images" / manifest["source_path"][0]
    ).read_bytes()


def test_a_clean_composed_set_passes_and_prepares_with_its_boxes(scenes, tmp_path):
    import_scenes(digit_scenes_source(40, seed=3), tmp_path / "raw")
    report = validate_dataset(tmp_path / "raw", tmp_path / "validated", LENIENT)
    assert report.passed, report.summary()
    ref = prepare_dataset(
        tmp_path / "validated",
        tmp_path / "raw",
        tmp_path / "prepared",
        PrepareParams(image_size=64, val_fraction=0.2, test_fraction=0.2),
        seed=1,
    )
    assert ref.class_names == [str(d) for d in range(10)]
    assert sum(sum(c.values()) for c in ref.counts.values()) == len(read_boxes(tmp_path / "raw"))
    assert np.load(tmp_path / "prepared" / "images.npy").shape == (40, 64, 64, 3)
    assert load_dataset_ref(tmp_path / "prepared").counts == ref.counts
    # an image keeps its split when the dataset grows: the split is a seeded hash of its content
    import_scenes(digit_scenes_source(60, seed=3), tmp_path / "raw")
    assert validate_dataset(tmp_path / "raw", tmp_path / "validated", LENIENT).passed
    prepare_dataset(
        tmp_path / "validated",
        tmp_path / "raw",
        tmp_path / "grown",
        PrepareParams(image_size=64, val_fraction=0.2, test_fraction=0.2),
        seed=1,
    )
    before = read_manifest(tmp_path / "prepared").set_index("sha256")["split"]
    after = read_manifest(tmp_path / "grown").set_index("sha256")["split"]
    assert after[before.index].equals(before)


def planted_coco(root: Path) -> tuple[Path, dict[str, str]]:
    """A COCO set with one of every bad annotation; returns the annotation file and offender -> check."""
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "img" / f"ok{i}.png")
    (root / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    images = [{"id": i, "file_name": f"img/ok{i}.png"} for i in range(6)]
    images += [{"id": 50, "file_name": "img/broken.png"}, {"id": 60, "file_name": "img/gone.png"}]
    good = [{"id": 100 + i, "image_id": i, "category_id": 1, "bbox": [5, 5, 20, 20]} for i in range(6)]
    bad = [
        {"id": 1, "image_id": 0, "category_id": 1, "bbox": [40, 10, 20, 10]},  # past the right edge (width 50)
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 10]},  # no area
        {"id": 3, "image_id": 2, "category_id": 99, "bbox": [10, 10, 10, 10]},  # unknown category
        {"id": 4, "image_id": 77, "category_id": 1, "bbox": [10, 10, 10, 10]},  # image id not listed
        {"id": 5, "image_id": 60, "category_id": 1, "bbox": [10, 10, 10, 10]},  # listed, file missing
        {"id": 6, "image_id": 3, "category_id": 1, "bbox": [5.5, 5, 20, 20]},  # the same box twice
        {"id": 7, "image_id": 4, "category_id": 1, "bbox": [30, 30, 1, 1]},  # under min_box_size
        {"id": 8, "image_id": 50, "category_id": 1, "bbox": [1, 1, 5, 5]},  # on an unreadable image
    ]
    categories = [{"id": 1, "name": "widget"}, {"id": 2, "name": "gadget"}]  # gadget: no instance at all
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": good + bad, "categories": categories}))
    return path, {
        "annotation 1 in images/img_ok0.png": "box_inside",
        "annotation 2 in images/img_ok1.png": "box_area",
        "annotation 3 in images/img_ok2.png (category 99)": "box_category",
        "annotation 4 in image id 77": "box_image",
        "annotation 5 in img/gone.png": "box_image",
        "annotation 6 in images/img_ok3.png": "box_duplicates",
        "annotation 7 in images/img_ok4.png": "box_size",
        "images/img_broken.png": "decodes",
        "gadget": "min_per_class",
    }


def test_every_bad_annotation_is_named_by_id_and_image_in_its_check(tmp_path):
    annotations, planted = planted_coco(tmp_path / "coco")
    import_scenes(coco_source(tmp_path / "coco", annotations), tmp_path / "raw")
    (tmp_path / "validated").mkdir()  # an old validated set must not survive a failure
    params = ValidateParams(min_per_class=1, max_imbalance_ratio=100.0)
    report = validate_dataset(tmp_path / "raw", tmp_path / "validated", params)
    assert not report.passed and not (tmp_path / "validated").exists()
    named = {offender: check.name for check in report.checks for offender in check.offenders}
    assert named == planted
    summary = report.summary()
    assert "box_category: 1 failing" in summary and "annotation 4 in image id 77" in summary
    json_report, _ = write_reports(report, tmp_path / "reports")
    checks = {c["name"]: c for c in json.loads(json_report.read_text())["checks"]}
    assert checks["box_duplicates"]["offenders"] == ["annotation 6 in images/img_ok3.png"]


def test_quarantine_takes_each_image_with_a_bad_box_whole_and_drops_orphan_annotations(tmp_path):
    annotations, _ = planted_coco(tmp_path / "coco")
    import_scenes(coco_source(tmp_path / "coco", annotations), tmp_path / "raw")
    params = ValidateParams(min_per_class=1, on_error="quarantine", classes=["widget"])
    report = validate_dataset(tmp_path / "raw", tmp_path / "validated", params)
    assert report.passed, report.summary()
    kept = read_manifest(tmp_path / "validated")["path"].tolist()
    assert kept == ["images/img_ok5.png"]  # ok0-ok4 each hold a bad box; broken.png does not decode
    boxes = read_boxes(tmp_path / "validated")
    assert boxes["annotation"].tolist() == ["105"]  # its good box; no box of a quarantined image is left
    quarantine = pd.read_csv(tmp_path / "validated" / "quarantine.csv")
    reasons = dict(zip(quarantine["path"], quarantine["reasons"], strict=True))
    assert reasons["images/img_ok2.png"] == "box_category" and reasons["annotation 4 in image id 77"] == "box_image"
    assert (tmp_path / "validated" / "quarantine" / "images" / "img_ok0.png").is_file()


def test_yolo_orphan_labels_unknown_classes_and_bad_lines(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (100, 50), 90).save(root / "images" / "a.png")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n7 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("bolt\nnut\n")
    _, boxes = import_scenes(yolo_source(root), tmp_path / "raw")
    first = boxes.iloc[0]
    assert first["label"] == "bolt" and first[COORDS].tolist() == pytest.approx([40, 15, 60, 35])
    report = validate_dataset(tmp_path / "raw", tmp_path / "validated", LENIENT)
    named = {offender: check.name for check in report.checks for offender in check.offenders}
    assert named == {
        "annotation labels/a.txt:2 in images/a.png (category 7)": "box_category",
        "annotation labels/ghost.txt:1 in labels/ghost.txt": "box_image",
        "nut": "min_per_class",
    }
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(DataError, match=r"labels/a.txt:1: expected 5 fields"):
        import_scenes(yolo_source(root), tmp_path / "raw2")
    assert not (tmp_path / "raw2").exists()


def test_a_source_that_is_not_coco_is_refused_in_one_line(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="needs lists images, annotations, categories"):
        coco_source(tmp_path, tmp_path / "x.json")
    with pytest.raises(DataError, match="names no classes"):
        (tmp_path / "images").mkdir()
        yolo_source(tmp_path)


def test_a_voc_object_without_a_box_is_named_and_an_image_not_there_keeps_its_boxes_as_orphans(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "JPEGImages" / "a.jpg")
    box = "<object><name>can</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>8</ymax></bndbox></object>"
    (tmp_path / "Annotations" / "a.xml").write_text(f"<annotation><filename>a.jpg</filename>{box}</annotation>")
    (tmp_path / "Annotations" / "gone.xml").write_text(f"<annotation><filename>gone.jpg</filename>{box}</annotation>")
    source = voc_source(tmp_path)
    assert source.classes == ["can"] and source.total == 1
    assert [(image, (b.x1, b.y1, b.x2, b.y2)) for image, b in source.orphans] == [("gone.jpg", (0.0, 0.0, 10.0, 8.0))]
    (tmp_path / "Annotations" / "b.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>can</name></object></annotation>"
    )
    with pytest.raises(DataError, match=r"^b\.xml: object 1 has no <name> or no <bndbox>"):
        voc_source(tmp_path)
