"""Data validation on real files: every planted problem is caught by name, in the right check,
bad files can be quarantined, and a failure never leaves a 'validated' dataset behind."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cvops.config import ValidateParams
from cvops.data.manifest import MANIFEST, import_source, read_manifest
from cvops.data.prepare import check_split
from cvops.data.sources import folder_source
from cvops.data.validation import validate_dataset, write_reports
from cvops.errors import DataInvalidError
from tests.conftest import write_image_folder

BOUNDS = {"min_size": 8, "max_size": 64}
CHECKS = ("decodes", "mode", "width", "height", "aspect_ratio", "classes", "duplicates", "min_per_class", "imbalance")


def imported(root: Path, classes: dict[str, int]) -> Path:
    """A clean import of distinct random 16x16 PNGs; returns raw_dir."""
    source = write_image_folder(root / "source", classes, size=16)
    import_source(folder_source(source), root / "raw")
    return root / "raw"


def save(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def plant_file_problems(raw: Path) -> dict[str, str]:
    """Broken files written straight into raw_dir after the import; returns path -> the check it breaks."""
    good = (raw / "cat" / "img_000.png").read_bytes()
    (raw / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (raw / "dog" / "empty.png").write_bytes(b"")
    (raw / "dog" / "notes.png").write_text("this is not an image\n")
    # an exact copy under another name: the split would be free to put the two in different splits
    shutil.copy(raw / "dog" / "img_003.png", raw / "dog" / "img_003_copy.png")
    save(raw / "cat" / "tiny.png", (2, 2))
    return {
        "cat/truncated.png": "decodes",
        "dog/empty.png": "decodes",
        "dog/notes.png": "decodes",
        "dog/img_003_copy.png": "duplicates",
        "cat/tiny.png": "width",
    }


def by_name(report) -> dict:
    return {c.name: c for c in report.checks}


def test_clean_dataset_passes_every_check(tmp_path):
    raw = imported(tmp_path, {"cat": 12, "dog": 12, "fox": 12})
    validated = tmp_path / "validated"

    report = validate_dataset(raw, validated, ValidateParams(min_per_class=10, **BOUNDS))

    assert report.passed and report.num_files == 36 and not report.quarantined
    assert set(by_name(report)) == set(CHECKS)
    assert all(c.passed and not c.offenders for c in report.checks)
    accepted = read_manifest(validated)
    assert sorted(accepted["path"]) == sorted(read_manifest(raw)["path"])
    assert pd.read_csv(validated / "quarantine.csv").empty
    assert "PASSED" in report.summary() and " x " not in report.summary()


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    """A dataset that validated once, then had every kind of problem planted in it."""
    root = tmp_path_factory.mktemp("corrupted")
    raw = imported(root, {"cat": 12, "dog": 12, "fox": 4})
    validated = root / "validated"
    params = ValidateParams(classes=["cat", "dog", "fox"], min_per_class=3, **BOUNDS)
    assert validate_dataset(raw, validated, params).passed
    assert (validated / MANIFEST).is_file()

    planted = plant_file_problems(raw)
    save(raw / "bird" / "x.png", (16, 16))  # a class nobody declared
    save(raw / "dog" / "wide.png", (6000, 10))  # too wide, but tall enough
    save(raw / "cat" / "sliver.png", (60, 8))  # inside min_size and max_size, but 7.5 times as wide as tall
    save(raw / "dog" / "alpha.png", (16, 16), mode="RGBA")
    params = params.model_copy(update={"min_per_class": 10, "max_imbalance_ratio": 3.9, "max_aspect_ratio": 5.0})
    report = validate_dataset(raw, validated, params)
    return report, validated, planted


def test_every_planted_problem_is_named_in_its_check(corrupted):
    report, _, _ = corrupted
    checks = by_name(report)
    assert not report.passed
    assert sorted(checks["decodes"].offenders) == ["cat/truncated.png", "dog/empty.png", "dog/notes.png"]
    assert sorted(checks["duplicates"].offenders) == ["dog/img_003.png", "dog/img_003_copy.png"]
    assert checks["classes"].offenders == ["bird/x.png"]
    assert checks["mode"].offenders == ["dog/alpha.png"]
    assert sorted(checks["width"].offenders) == ["cat/tiny.png", "dog/wide.png"]
    assert checks["height"].offenders == ["cat/tiny.png"]
    assert sorted(checks["aspect_ratio"].offenders) == ["cat/sliver.png", "dog/wide.png"]
    assert checks["min_per_class"].offenders == ["fox"]
    # 17 dog files (12 + 5 planted) against 4 fox: 4.25 > 3.9; cat has 15 (3.75)
    assert checks["imbalance"].offenders == ["dog"]
    assert report.num_files == 12 + 12 + 4 + 5 + 4


def test_summary_names_failed_checks_and_files(corrupted):
    report, _, _ = corrupted
    summary = report.summary()
    assert summary.startswith("data validation FAILED")
    for name in CHECKS:
        assert f"x {name}:" in summary
    for path in ("cat/truncated.png", "dog/notes.png", "bird/x.png", "dog/wide.png", "cat/sliver.png"):
        assert path in summary


def test_failure_removes_a_previously_validated_dataset(corrupted):
    _, validated, _ = corrupted
    assert not validated.exists()
    assert not [p for p in validated.parent.iterdir() if p.name.startswith(".validated")]


def test_reports_hold_checks_and_gx_results(corrupted, tmp_path):
    report, _, _ = corrupted
    json_path, html_path = write_reports(report, tmp_path / "reports")

    saved = json.loads(json_path.read_text())
    assert saved["passed"] is False
    assert {c["name"]: c["passed"] for c in saved["checks"]}["decodes"] is False
    assert len(saved["gx_results"]) == 9  # one per check
    assert all("success" in r and "expectation_config" in r for r in saved["gx_results"])
    page = html_path.read_text()
    assert "FAILED" in page and "cat/truncated.png" in page and "min_per_class" in page


def test_quarantine_moves_bad_files_out_and_passes(tmp_path):
    raw = imported(tmp_path, {"cat": 12, "dog": 12})
    planted = plant_file_problems(raw)
    validated = tmp_path / "validated"
    params = ValidateParams(on_error="quarantine", min_per_class=10, **BOUNDS)

    report = validate_dataset(raw, validated, params)

    assert report.passed, report.summary()
    assert sorted(report.quarantined) == sorted(planted)
    assert sorted(read_manifest(validated)["path"]) == sorted(read_manifest(raw)["path"])
    quarantine = pd.read_csv(validated / "quarantine.csv")
    reasons = dict(zip(quarantine["path"], quarantine["reasons"].str.split(";"), strict=True))
    assert reasons.keys() == planted.keys()
    for path, check in planted.items():
        assert check in reasons[path]
        assert (validated / "quarantine" / path).read_bytes() == (raw / path).read_bytes()
    assert reasons["cat/tiny.png"] == ["width", "height"]
    assert (validated / "quarantine" / "dog" / "img_003_copy.png").is_file()
    assert not (validated / "quarantine" / "dog" / "img_003.png").exists()  # one copy of the pair stays


def test_quarantine_keeps_exactly_one_of_an_imported_duplicate_pair(tmp_path):
    source = write_image_folder(tmp_path / "source", {"cat": 12, "dog": 12}, size=16)
    shutil.copy(source / "cat" / "img_005.png", source / "dog" / "stray_cat.png")  # same image, two classes
    import_source(folder_source(source), tmp_path / "raw")
    params = ValidateParams(on_error="quarantine", min_per_class=10)

    report = validate_dataset(tmp_path / "raw", tmp_path / "validated", params)

    assert report.passed and report.quarantined == ["dog/stray_cat.png"]
    accepted = read_manifest(tmp_path / "validated")
    assert "cat/img_005.png" in set(accepted["path"]) and len(accepted) == 24
    assert accepted["sha256"].is_unique


def test_a_broken_file_in_the_users_folder_is_imported_then_named(tmp_path):
    source = write_image_folder(tmp_path / "source", {"cat": 12, "dog": 12}, size=16)
    (source / "dog" / "scan.jpg").write_bytes(b"\xff\xd8 half a jpeg")
    import_source(folder_source(source), tmp_path / "raw")

    failed = validate_dataset(tmp_path / "raw", tmp_path / "validated", ValidateParams())
    assert [c.name for c in failed.failed_checks] == ["decodes"]
    assert "dog/scan.jpg" in failed.summary()

    params = ValidateParams(on_error="quarantine")
    report = validate_dataset(tmp_path / "raw", tmp_path / "validated", params)
    assert report.passed and report.quarantined == ["dog/scan.jpg"]
    assert len(read_manifest(tmp_path / "validated")) == 24


def test_quarantine_cannot_fix_a_class_with_too_few_images(tmp_path):
    raw = imported(tmp_path, {"cat": 12, "dog": 12, "fox": 4})
    plant_file_problems(raw)
    validated = tmp_path / "validated"
    params = ValidateParams(on_error="quarantine", min_per_class=10, **BOUNDS)

    report = validate_dataset(raw, validated, params)

    assert not report.passed
    assert [c.name for c in report.failed_checks] == ["min_per_class"]
    assert by_name(report)["min_per_class"].offenders == ["fox"]
    assert "fox" in report.summary()
    assert not validated.exists()


def test_check_split_refuses_an_image_shared_between_splits():
    manifest = pd.DataFrame(
        {
            "path": ["cat/a.png", "cat/b.png", "cat/a_copy.png", "dog/c.png"],
            "sha256": ["aa", "bb", "aa", "cc"],
            "split": ["train", "val", "test", "train"],
        }
    )
    check_split(manifest[manifest["path"] != "cat/a_copy.png"])  # no copies: accepted

    with pytest.raises(DataInvalidError, match="leakage") as caught:
        check_split(manifest)
    assert "cat/a.png" in str(caught.value) and "cat/a_copy.png" in str(caught.value)
    assert "cat/b.png" not in str(caught.value)
