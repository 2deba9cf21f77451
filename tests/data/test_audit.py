"""The data audit on a constructed set whose label flips, near-copies and leaks are known: each found and named by
path, the gate refusing the leak; the same set clean: no finding."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFilter

from cvops.config import AuditParams, GateParams
from cvops.data.audit import DataAudit, audit_images
from cvops.data.audit_report import write_audit_reports
from cvops.data.prepare import DatasetRef
from cvops.evaluation.gate import _leakage
from tests.images import photo

SIZE = 64
CLASSES = ["cool", "warm"]
PER_SPLIT = {"train": 24, "val": 6, "test": 6}


def tinted(seed: int, label: str) -> Image.Image:
    """A photo-like image (its sensor noise smoothed) tinted by its class: warm (red up, blue down) or cool."""
    pixels = np.asarray(photo(SIZE, SIZE, seed).filter(ImageFilter.GaussianBlur(1)), dtype=np.float32)
    strong, weak = (0, 2) if label == "warm" else (2, 0)
    pixels[..., strong] = 255 - (255 - pixels[..., strong]) * 0.3
    pixels[..., weak] *= 0.3
    return Image.fromarray(pixels.astype(np.uint8))


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def recompressed(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue()))


def cropped(image: Image.Image) -> Image.Image:
    return image.crop((2, 1, SIZE - 1, SIZE - 2))  # 5% off, not centred


@pytest.fixture(scope="module")
def clean() -> tuple[list[Image.Image], pd.DataFrame]:
    images, rows, seed = [], [], 1000
    for label in CLASSES:
        for split, count in PER_SPLIT.items():
            for _ in range(count):
                seed += 1
                images.append(tinted(seed, label))
                rows.append({"path": f"{label}/{seed}.png", "split": split, "label": label})
    return images, pd.DataFrame(rows)


def run(images: list[Image.Image], rows: pd.DataFrame, **params: float) -> DataAudit:
    ref = DatasetRef(prepared_dir="", class_names=CLASSES, image_size=SIZE, counts={}, data_version="abc123")
    pixels = np.stack([as_array(image) for image in images])
    return audit_images(pixels, rows, ref, AuditParams(**params), 42, torch.device("cpu"))


def test_a_clean_set_has_no_finding_and_passes_the_gate(clean: tuple[list[Image.Image], pd.DataFrame]) -> None:
    audit = run(*clean)
    assert (audit.images, audit.labels_ranked, audit.partial) == (72, 72, False)
    assert audit.label_issues == [] and audit.pairs == [] and audit.outliers == []
    assert _leakage(audit, GateParams().max_leakage or 0).verdict == "pass"


def test_flips_copies_and_leaks_are_found_by_path(
    clean: tuple[list[Image.Image], pd.DataFrame], tmp_path: Path
) -> None:
    images, rows = list(clean[0]), clean[1].copy()
    train = rows.index[rows["split"] == "train"]
    test = rows.index[rows["split"] == "test"]
    flipped = [train[0], train[30]]  # a cool and a warm image labelled the other way
    for i in flipped:
        rows.loc[i, "label"] = "warm" if rows.loc[i, "label"] == "cool" else "cool"
    leaks = {test[0]: (train[3], recompressed), test[7]: (train[40], cropped)}  # test images that are train copies
    for held, (source, change) in leaks.items():
        images[held] = change(images[source])
        rows.loc[held, "label"] = rows.loc[source, "label"]
    resized = images[train[5]].resize((SIZE * 3, SIZE * 3), Image.Resampling.BICUBIC)
    images.append(resized)  # a second copy in train, labelled the other way
    rows.loc[len(rows)] = {"path": "warm/copy.png", "split": "train", "label": "warm"}

    audit = run(images, rows)

    suspects = {issue.path: issue.suspected for issue in audit.label_issues}
    truth = {rows.loc[i, "path"]: clean[1].loc[i, "label"] for i in flipped}
    assert suspects.items() >= truth.items(), audit.label_issues  # each flip, with its true class
    assert suspects.items() <= (truth | {"warm/copy.png": "cool"}).items()  # and nothing else, but the copy
    assert audit.leaked("test") == sorted(rows.loc[list(leaks), "path"])
    pairs = {frozenset((p.first.path, p.second.path)) for p in audit.pairs}
    assert frozenset((rows.loc[train[5], "path"], "warm/copy.png")) in pairs
    assert [p.conflicting for p in audit.duplicates] == [True]
    check = _leakage(audit, 0)
    assert check.verdict == "fail" and check.value == 2
    assert rows.loc[test[0], "path"] in check.note and "reports/audit.html" in check.note
    assert _leakage(audit, 2).verdict == "pass"

    json_path, html_path = write_audit_reports(
        audit, np.stack([as_array(i) for i in images]), list(rows["path"]), tmp_path
    )
    assert DataAudit.model_validate_json(json_path.read_text()) == audit
    page = html_path.read_text()
    assert rows.loc[test[7], "path"] in page and page.count("<img") >= 2 * 2 + 2 * 1
    assert not list(tmp_path.glob(".*"))  # no temp file left behind

    reviewed = rows.assign(reviewed_at=None)
    reviewed.loc[flipped[0], "reviewed_at"] = "2026-12-08T09:30:00Z"  # a person kept this label: not suspected again
    again = {issue.path for issue in run(images, reviewed).label_issues}
    assert rows.loc[flipped[1], "path"] in again and rows.loc[flipped[0], "path"] not in again


def test_out_of_time_the_labels_are_partial_and_the_leaks_whole(
    clean: tuple[list[Image.Image], pd.DataFrame],
) -> None:
    images, rows = list(clean[0]), clean[1]
    test, train = rows.index[rows["split"] == "test"], rows.index[rows["split"] == "train"]
    images[test[0]] = recompressed(images[train[0]])
    audit = run(images, rows, time_budget_s=1e-9)
    assert audit.partial and audit.note.startswith("partial")
    assert 0 < audit.labels_ranked < audit.images  # the first fold always runs
    assert audit.leaked("test") == [rows.loc[test[0], "path"]]
    assert json.loads(audit.model_dump_json())["partial"] is True
