"""A detection checkout through the CLI, as a user runs it: `cvops run training` on composed scenes registers
a detector under its own name and packages it as a bento of the detector service; `cvops serve` answers
POST /detect with boxes in the pixels of the image sent (and draws them) and takes their true boxes back (POST
/feedback, `cvops feedback import`), which `cvops run monitoring` scores as live mAP; batch inference writes a
row per box. Real ZenML, MLflow, DVC and BentoML; each command in its own process."""

import csv
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image, ImageOps

from cvops.config import Project
from cvops.data.production import stable_split
from cvops.data.validation import pairwise_iou
from cvops.monitoring.drift import VERDICT_FILE, DriftVerdict
from cvops.serving.batch import BOX_PREDICTION_COLUMNS
from cvops.tasks.detection.boxes import COORDS, read_boxes
from tests.cli import cvops
from tests.docs import assert_every_mlflow_name_is_documented
from tests.server import Server

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
LIVE = 12  # answers whose true boxes come back


@pytest.fixture(scope="module")
def detection_checkout(trained_scenes, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of the session's detection checkout (set to detection with -S, trained on small scenes), and what
    its training printed."""
    return trained_scenes.copy(tmp_path_factory.mktemp("detection") / "checkout"), trained_scenes.training


@pytest.fixture(scope="module")
def detector_server(detection_checkout) -> Server:
    root, _ = detection_checkout
    started = Server(root, "--version", "1", "-S", "serve.capture.fraction=1.0")  # every image kept to label
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
        ("/feedback", b'{"request_id": "x", "label": "1"}', "application/json", 400, '"boxes": [{"box": [x1, y1'),
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


def test_true_boxes_come_back_over_http_and_from_a_file_and_monitoring_scores_live_map(
    detection_checkout, detector_server, tmp_path
) -> None:
    root, _ = detection_checkout
    answers, truths = [], []
    for index in range(LIVE):
        path, truth = scene_file(root, index)
        status, answer = detector_server.request("/detect", path.read_bytes(), {"Content-Type": "image/png"})
        assert status == 200, answer
        answers.append(answer["request_id"])
        truths.append([{"box": list(row[COORDS]), "label": row["label"]} for _, row in truth.iterrows()])
    first, label = answers[0], truths[0][0]["label"]
    refused = [
        ({"request_id": first, "boxes": [{"box": [0, 0, 10_000, 5], "label": label}]}, 400, "does not lie in the"),
        ({"request_id": first, "boxes": [{"box": [0, 0, 5, 5], "label": "cat"}]}, 400, "unknown label 'cat'"),
        ({"request_id": "0" * 32, "boxes": []}, 404, "unknown request_id"),
    ]
    for payload, code, says in refused:
        status, body = detector_server.post_json("/feedback", payload)
        assert status == code and says in body["error"], body
    half = LIVE // 2
    for request_id, boxes in zip(answers[:half], truths[:half], strict=True):
        status, body = detector_server.post_json("/feedback", {"request_id": request_id, "boxes": boxes})
        assert status == 200 and body["recorded"] is True, body
    lines = [
        [i, box["label"], *box["box"]] for i, boxes in zip(answers[half:], truths[half:], strict=True) for box in boxes
    ]
    table = pd.DataFrame(lines, columns=["request_id", "label", "x1", "y1", "x2", "y2"])
    outside = tmp_path / "outside.csv"
    table.assign(x2=10_000).to_csv(outside, index=False)
    refused_file = cvops(root, "feedback", "import", str(outside))
    assert refused_file.returncode == 14 and "does not lie in the" in refused_file.stderr
    boxes_file = tmp_path / "boxes.csv"
    table.to_csv(boxes_file, index=False)
    imported = cvops(root, "feedback", "import", str(boxes_file))
    assert imported.returncode == 0 and f"recorded the true boxes of {LIVE - half} answers" in imported.stdout

    promoted = cvops(root, "models", "promote", "1", "--reviewer", "alice", "--note", "the detector it serves")
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    assert cvops(root, "params", "set", f"monitor.min_feedback={LIVE}").returncode == 0
    monitored = cvops(root, "run", "monitoring", "--window", str(LIVE), "--no-retrain")
    assert monitored.returncode == 0, monitored.stdout[-2000:] + monitored.stderr[-3000:]
    report = Path(monitored.stdout.split("report: ")[1].split()[0])
    quality = DriftVerdict.model_validate_json((report / VERDICT_FILE).read_text()).quality
    assert quality is not None and quality.metric == "mAP" and quality.labelled == LIVE
    assert quality.accuracy is not None and quality.low is not None and quality.high is not None
    assert 0 < quality.accuracy <= 1 and quality.low <= quality.accuracy <= quality.high  # its own training scenes
    assert quality.line in monitored.stdout


def test_a_box_queue_goes_through_label_studio_and_its_boxes_become_a_new_data_version(
    detection_checkout, detector_server, tmp_path
) -> None:
    root, _ = detection_checkout
    # the data stages' params as the detector was trained with them (tests/assets/small-scenes.yaml)
    matched = cvops(root, "params", "set", "data.scenes=160", "prepare.image_size=128", "validate.min_per_class=5")
    assert matched.returncode == 0, matched.stderr[-2000:]
    sent = []
    for index in range(20, 23):  # new images: scenes on a wider canvas
        with Image.open(scene_file(root, index)[0]) as scene:
            framed = png(ImageOps.expand(scene.convert("RGB"), border=12, fill=(255, 255, 255)))
        status, answer = detector_server.request("/detect", framed, {"Content-Type": "image/png"})
        assert status == 200, answer
        sent.append(answer["request_id"])
    suspects = cvops(root, "labels", "queue", "--strategy", "suspect", "--output", str(tmp_path / "suspects"))
    assert suspects.returncode == 3 and "does not judge a detection dataset's labels yet" in suspects.stderr
    batch = tmp_path / "boxes"
    queued = cvops(root, "labels", "queue", "--n", "50", "--output", str(batch))
    assert queued.returncode == 0, queued.stderr[-2000:]
    assert '<RectangleLabels name="label"' in (batch / "label_config.xml").read_text()
    queued = json.loads((batch / "label_studio.json").read_text())
    tasks = [task for task in queued if task["data"]["request_id"] in sent]  # what the export holds: these labelled
    assert len(tasks) == 3 and all(t["predictions"][0]["result"] for t in tasks)  # the detector's boxes drawn
    # the labeller accepts the drawn boxes, but for the first image, where they draw one box of their own
    chosen = {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rotation": 0, "rectanglelabels": ["3"]}
    for number, task in enumerate(tasks):
        drawn = task["predictions"][0]["result"]
        result = [drawn[0] | {"value": chosen}] if number == 0 else drawn
        task["annotations"] = [{"completed_by": {"id": 1, "email": "ann@example.com"}, "result": result}]
    lock = (root / "dvc.lock").read_text()
    chose = tmp_path / "chose.csv"  # a classifier's kind of label: no boxes
    chose.write_text(f"request_id,label\n{sent[0]},3\n")
    refused = cvops(root, "labels", "import", str(chose))
    assert refused.returncode == 14 and "has a label but no boxes" in refused.stderr
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    imported = cvops(root, "labels", "import", str(export))
    assert imported.returncode == 0, imported.stdout[-2000:] + imported.stderr[-3000:]
    assert f"added {len(tasks)} labelled production images" in imported.stdout
    assert (root / "dvc.lock").read_text() != lock  # a new data version

    manifest = pd.read_csv(root / "data" / "prepared" / "manifest.csv", dtype=str)
    production = manifest[manifest["source"] == "production"]
    assert len(production) == len(tasks) and set(production["labeller"]) == {"ann@example.com"}
    assert production["split"].tolist() == stable_split(production["sha256"], 0.15, 0.15, 42).tolist()
    boxes = read_boxes(root / "data" / "raw")
    first = production.set_index("request_id").loc[tasks[0]["data"]["request_id"]]
    width, height = float(first["width"]), float(first["height"])
    drawn = boxes[boxes["image"] == first["path"]]
    assert drawn["label"].tolist() == ["3"]
    expected = [0.1 * width, 0.2 * height, 0.4 * width, 0.6 * height]
    assert np.allclose(drawn[list(COORDS)].to_numpy(dtype=float)[0], expected, atol=0.01)
    second = production.set_index("request_id").loc[tasks[1]["data"]["request_id"], "path"]
    assert len(boxes[boxes["image"] == second]) == len(tasks[1]["predictions"][0]["result"])
