"""A detection checkout through the CLI, as a user runs it: `cvops run training` on composed scenes registers
a detector under its own name and packages it as a bento of the detector service; `cvops serve` answers
POST /detect with boxes in the pixels of the image sent (and draws them); batch inference writes a row per
box. Real ZenML, MLflow, DVC and BentoML; each command in its own process."""

import csv
import io
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from cvops.config import Project
from cvops.data.validation import pairwise_iou
from cvops.serving.batch import BOX_PREDICTION_COLUMNS
from cvops.tasks.detection.boxes import COORDS, read_boxes
from tests.cli import cvops
from tests.docs import assert_every_mlflow_name_is_documented
from tests.server import Server

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def detection_checkout(trained_scenes, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of the session's detection checkout (set to detection with -S, trained on small scenes), and what
    its training printed."""
    return trained_scenes.copy(tmp_path_factory.mktemp("detection") / "checkout"), trained_scenes.training


@pytest.fixture(scope="module")
def detector_server(detection_checkout) -> Server:
    root, _ = detection_checkout
    started = Server(root, "--version", "1")
    yield started
    started.stop()


def scene_file(root: Path, index: int) -> tuple[Path, pd.DataFrame]:
    """A training scene of the checkout and its true boxes (in its pixels)."""
    boxes = read_boxes(root / "data" / "raw")
    image = sorted(boxes["image"].unique())[index]
    return root / "data" / "raw" / image, boxes[boxes["image"] == image]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_training_registers_a_detector_under_its_own_name_with_map_and_a_detector_bento(detection_checkout) -> None:
    root, result = detection_checkout
    assert "test mAP@[.5:.95] " in result.stdout and "registered model: cvops-detector version 1" in result.stdout
    listed = cvops(root, "models", "list")
    assert listed.returncode == 0 and listed.stdout.split()[:4] == ["version", "aliases", "map", "map_50"]
    row = listed.stdout.splitlines()[1].split()
    assert row[0] == "1" and 0.05 <= float(row[2]) <= float(row[3]) <= 1  # mAP@[.5:.95] <= mAP@.5
    assert row[4] in ("onnx-fp32", "onnx-int8") and 0.05 <= float(row[5]) <= 1  # what ships, and its own mAP
    bento_tag = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("bento:"))
    name, _, tag = bento_tag.partition(":")
    bento = yaml.safe_load((root / "bentos" / "bentos" / name / tag / "bento.yaml").read_text())
    assert name == "cvops-detector" and bento["service"] == "cvops.serving.service:Detector"
    shown = cvops(root, "models", "show", "1")
    assert shown.returncode == 0 and "mAP of shipped onnx-" in shown.stdout, shown.stdout[-2000:]
    assert "object_size=small" in shown.stdout and "mAP" in shown.stdout
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(client.get_model_version("cvops-detector", "1").run_id)  # evaluate.tracking: digit-tracks
    assert 0 <= run.data.metrics["test_tracking_idf1"] <= 1 and run.data.metrics["test_tracking_frames"] == 90
    videos = run.data.tags["tracking_data"]  # their version, beside data_version: composed from base.seed
    assert videos == f"digit-tracks:1:seed={Project(root).params().base.seed}"
    card = next((root / "mlflow" / "artifacts").rglob("model_card.md")).read_text()
    assert "## Tracking (90 frames of videos with true tracks" in card and "![tracked frames](tracking.png)" in card
    assert f"Videos: `{videos}`" in card


def test_detect_answers_in_the_pixels_of_the_image_sent_and_draws_them(detection_checkout, detector_server) -> None:
    root, _ = detection_checkout
    path, truth = scene_file(root, 0)
    with Image.open(path) as original:
        width, height = original.size
        stretched = original.convert("RGB").resize((width * 2, height * 3))  # not the model's input size
    status, answer = detector_server.request("/detect", png(stretched), {"Content-Type": "image/png"})
    assert status == 200 and answer["model_name"] == "cvops-detector" and answer["model_version"] == "1", answer
    boxes = np.array([d["box"] for d in answer["detections"]]).reshape(-1, 4)
    assert len(boxes) > 0 and (boxes[:, [0, 2]] <= width * 2 + 0.01).all() and (boxes[:, [1, 3]] <= height * 3).all()
    # the boxes are where the digits are in the image sent: the true boxes, stretched as the image was
    expected = truth[list(COORDS)].to_numpy(dtype=float) * np.array([2, 3, 2, 3])
    best = pairwise_iou(expected, boxes).max(axis=1)
    assert best.max() > 0.5, (answer["detections"], expected)

    status, kind, drawn = detector_server.post_bytes("/detect?render=1", png(stretched), "image/png")
    assert status == 200 and kind == "image/png"
    with Image.open(io.BytesIO(drawn)) as picture:
        assert picture.size == stretched.size and picture.format == "PNG"
        assert np.abs(np.asarray(picture, dtype=int) - np.asarray(stretched, dtype=int)).max() > 100  # boxes drawn


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "says"),
    [
        ("/detect", b"not an image", "image/png", 400, "not a readable image"),
        ("/detect", b"", "application/json", 400, "send exactly one of"),
        ("/detect?render=yes", None, "image/png", 400, "render=yes"),
        ("/detect_batch?render=1", None, "image/png", 400, "render=1 draws one image's boxes"),
        ("/detect_batch", None, "image/png", 415, "a raw body holds one image"),
        ("/classify", None, "image/png", 404, "this service serves a detector: POST /detect or /detect_batch"),
        ("/feedback", b'{"request_id": "x", "label": "1"}', "application/json", 404, "serves a detector"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_json_error(
    detection_checkout, detector_server, path, body, content_type, status, says
) -> None:
    root, _ = detection_checkout
    sent = scene_file(root, 1)[0].read_bytes() if body is None else body
    answered, answer = detector_server.request(path, sent, {"Content-Type": content_type})
    assert answered == status and says in answer["error"], answer


def test_batch_inference_writes_a_row_per_box_and_one_for_an_image_without(detection_checkout, tmp_path) -> None:
    root, _ = detection_checkout
    folder = tmp_path / "incoming"
    folder.mkdir()
    for index in (2, 3):
        path, _ = scene_file(root, index)
        (folder / path.name).write_bytes(path.read_bytes())
    Image.new("RGB", (90, 70), (128, 128, 128)).save(folder / "blank.png")  # nothing to find
    (folder / "notes.txt").write_text("not an image")
    output = tmp_path / "boxes.csv"
    ran = cvops(root, "run", "batch-inference", "--input", str(folder), "--output", str(output), "--version", "1")
    assert ran.returncode == 0, ran.stderr[-3000:]
    with output.open() as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == BOX_PREDICTION_COLUMNS
    assert f"scored 3 of 4 files ({sum(row['label'] != '' for row in rows)} boxes)" in ran.stdout
    by_file = pd.DataFrame(rows).groupby("path")
    assert set(by_file.groups) == {"blank.png", "notes.txt", *(p.name for p in folder.glob("scene_*"))}
    blank, notes = by_file.get_group("blank.png"), by_file.get_group("notes.txt")
    assert (
        len(blank) == 1
        and blank.iloc[0]["label"] == ""
        and blank.iloc[0]["error"] == ""
        and blank.iloc[0]["request_id"]
    )
    assert len(notes) == 1 and "not a readable image" in notes.iloc[0]["error"]
    for name in (p.name for p in folder.glob("scene_*")):
        boxes = by_file.get_group(name)
        assert len(boxes) >= 1 and (boxes["label"] != "").all() and boxes["request_id"].nunique() == 1
        with Image.open(folder / name) as image:
            assert boxes["x2"].astype(float).max() <= image.width + 0.01


def test_every_name_the_detector_run_wrote_to_mlflow_is_in_the_reference(detection_checkout) -> None:
    root, _ = detection_checkout
    assert_every_mlflow_name_is_documented(root, "cvops-detector")
