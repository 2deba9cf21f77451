"""A user's own folder as users have them: class names with spaces and non-ASCII letters, and images in every
mode Pillow decodes (CMYK JPEGs, palette and 16-bit PNGs, float TIFFs, EXIF-rotated photos). It imports;
validation names each file the default modes refuse; with the modes allowed it trains, registers, serves and
scores in batch, always under the user's class names exactly. Each command in its own process, on a real
checkout (ZenML, MLflow, DVC, BentoML)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.checkouts import new_checkout
from tests.cli import assert_one_line_error, cvops
from tests.conftest import SMALL_RUN
from tests.images import mode_files, write_mode_folder
from tests.server import Server

pytestmark = pytest.mark.slow
CLASSES = {"große Teile": 200, "café crème": 50}  # bright and dark: any model that sees the pixels tells them apart
EVERY_MODE = "['1', L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, 'I;16', I, F]"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A checkout that imported the folder (3 files per mode per class) and trained on it."""
    root = new_checkout(tmp_path_factory.mktemp("user-folder"))
    folder = write_mode_folder(tmp_path_factory.mktemp("images"), CLASSES, copies=3)
    assert cvops(root, "init").returncode == 0
    imported = cvops(root, "data", "import", "folder", "--path", str(folder))
    assert imported.returncode == 0, imported.stderr[-3000:]  # a CMYK JPEG used to end it in a traceback
    return root, folder


def test_the_files_are_kept_as_they_are_under_the_exact_class_names(checkout) -> None:
    root, folder = checkout
    manifest = pd.read_csv(root / "data" / "raw" / "manifest.csv", keep_default_na=False)
    assert set(manifest["label"]) == set(CLASSES)
    original = folder / "große Teile" / "CMYK_0.jpg"
    assert (root / "data" / "raw" / "große Teile" / "CMYK_0.jpg").read_bytes() == original.read_bytes()


def test_validation_names_each_file_the_default_modes_refuse(checkout) -> None:
    root, _ = checkout
    result = cvops(root, "data", "validate")
    assert_one_line_error(result, 6, "data invalid")
    assert "x mode:" in result.stderr and "validate.allowed_modes" in result.stderr
    report = json.loads((root / "reports" / "validation.json").read_text(encoding="utf-8"))
    (mode,) = [check for check in report["checks"] if not check["passed"]]
    refused = {"1", "LA", "P", "RGBA", "CMYK", "YCbCr", "I16", "I", "F"}
    expected = {f"{label}/{m}_{i}" for label in CLASSES for m in refused for i in range(3)}
    assert {path.rsplit(".", 1)[0] for path in mode["offenders"]} == expected


@pytest.fixture(scope="module")
def trained(checkout) -> Path:
    root, _ = checkout
    result = cvops(
        root,
        "run",
        "training",
        "--overlay",
        str(SMALL_RUN),
        "-S",
        "data.source=folder",
        "-S",
        f"validate.allowed_modes={EVERY_MODE}",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return root


def test_every_mode_trains_and_the_model_keeps_the_class_names(trained) -> None:
    version = MlflowClient(f"sqlite:///{trained / 'mlflow' / 'mlflow.db'}").get_model_version("cvops-classifier", "1")
    assert json.loads(version.tags["model_info"])["class_names"] == sorted(CLASSES)
    assert "große Teile" in version.description and "café crème" in version.description
    card = Path(version.tags["model_card"].removeprefix("file://")).with_suffix(".md").read_text(encoding="utf-8")
    assert "`große Teile`" in card and "| café crème |" in card


def test_the_service_answers_every_mode_with_the_exact_class_name(trained) -> None:
    server = Server(trained, "--version", "1")
    try:
        for label, level in CLASSES.items():
            for mode, (data, suffix) in mode_files(level, seed=7).items():
                status, body = server.post_files("/classify", "image", [(f"{mode}{suffix}", data)])
                assert status == 200, (mode, body)
                assert {p["label"] for p in body["predictions"]} == set(CLASSES)
                assert body["predictions"][0]["label"] == label, mode
    finally:
        server.stop()


def test_batch_inference_scores_every_mode_under_the_exact_class_names(trained, tmp_path: Path) -> None:
    folder = write_mode_folder(tmp_path / "incoming", CLASSES, copies=1)
    output = tmp_path / "scored.csv"
    result = cvops(trained, "run", "batch-inference", "--input", str(folder), "--output", str(output), "--version", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    scored = pd.read_csv(output, keep_default_na=False)
    assert len(scored) == 24 and (scored["error"] == "").all()
    assert (scored["label"] == scored["path"].str.split("/").str[0]).all()  # each folder's class, exactly
