"""The BentoML service, started as `cvops serve` on a free loopback port over a real MLflow registry:
valid and bad requests, the API token, a champion swap under traffic, parity with offline predictions,
and the inference log."""

import base64
import io
import json
import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from PIL import Image
from scipy.stats import binomtest

from cvops.cli.shapes import schema
from cvops.config import DetectParams, Project
from cvops.data.manifest import import_source
from cvops.data.prepare import load_split, prepare_dataset
from cvops.data.preprocess import model_inputs
from cvops.data.sources import digits_source
from cvops.data.validation import validate_dataset
from cvops.evaluation.evaluator import EvaluationSetup, evaluate
from cvops.evaluation.gate import decide
from cvops.export.onnx_model import predict_logits, read_preprocessing, session
from cvops.export.quantization import quantize
from cvops.registry.artifacts import resolve
from cvops.registry.evidence import log_evaluation, log_gate_decision, log_quantization, quantization_tags
from cvops.registry.model_registry import ModelRegistry
from cvops.registry.tracking import log_trained_model, scratch_dir, use_project_store
from cvops.serving.batch import score_files
from cvops.serving.capture import CaptureStore
from cvops.serving.feedback import FeedbackStore
from cvops.serving.inference_log import read_inference_log
from cvops.serving.loading import load_served
from cvops.training.trainer import TrainResult
from tests.cli import assert_one_line_error, cvops
from tests.server import Server, stopped_on_exit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_project(
    tmp_path_factory: pytest.TempPathFactory, tiny_params, trained: TrainResult
) -> tuple[Project, ModelRegistry]:
    """A checkout with digits prepared and two registered versions of the session's small digits model (`trained`,
    fitted on the same images by the same params; 1 is champion)."""
    root = tmp_path_factory.mktemp("served")
    for name in ("params.yaml", "dvc.yaml"):
        (root / name).write_text((Path(__file__).parents[2] / name).read_text())
    project = Project(root)
    params = tiny_params.model_copy(update={"serve": tiny_params.serve.model_copy(update={"poll_seconds": 1.0})})
    project.set_params([f"serve.poll_seconds={params.serve.poll_seconds}", "serve.workers=1"])  # one: swaps are atomic
    import_source(digits_source(), project.raw_dir)
    validate_dataset(project.raw_dir, project.validated_dir, params.validation)
    ref = prepare_dataset(project.validated_dir, project.raw_dir, project.prepared_dir, params.prepare, 0)
    use_project_store(project, "cvops")
    registry = ModelRegistry.of(project, "cvops-classifier")
    model = trained.model
    with mlflow.start_run() as run:
        trained = log_trained_model(
            model, params.train.model, ref.class_names, ref.image_size, 1, resize=ref.resize, decoder=ref.decoder
        )
        setup = EvaluationSetup(scratch_dir(), torch.device("cpu"), 0, params.evaluate, params.measure)
        evaluation = evaluate(model, ref, setup)
        report = quantize(model, ref, scratch_dir(), params)
        decision = decide(evaluation, params.gate, report)
        log_evaluation(evaluation)
        log_quantization(report)
        log_gate_decision(decision)
    tags = {"data_version": "d", **quantization_tags(report, run.info.artifact_uri)}
    for _ in range(2):  # two versions of the same model: enough to watch the service swap between them
        registry.register(trained, evaluation.metrics, tags, decision)
    registry.promote("1", reviewer="test")
    return project, registry


@pytest.fixture(scope="module")
def server(served_project) -> Server:
    project, _ = served_project
    started = Server(project.root)
    yield started
    started.stop()


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_single_and_batch_requests_name_the_model(server, served_project) -> None:
    project, registry = served_project
    images, _, _ = load_split(registry_ref(project), "test")
    status, body = server.post_files("/classify", "image", [("a.png", png(images[0]))])
    assert status == 200, body
    assert body["model_version"] == "1" and body["lineage_id"] == registry.get("1").run_id
    assert body["arm"] == "champion" and len(body["request_id"]) == 32
    assert len(body["predictions"]) == 3 and body["predictions"][0]["score"] >= body["predictions"][1]["score"]
    status, same = server.post_json("/classify", {"image_base64": b64(png(images[0]))})
    assert status == 200 and same["predictions"] == body["predictions"]
    status, same = server.post_json("/classify", {"image_base64": f"data:image/png;base64,{b64(png(images[0]))}"})
    assert status == 200 and same["predictions"] == body["predictions"]  # a browser's data URI
    for content_type in ("image/png", "application/octet-stream"):  # the file itself as the body
        status, same = server.request("/classify", png(images[0]), {"Content-Type": content_type})
        assert status == 200 and same["predictions"] == body["predictions"], same
    status, batch = server.post_files("/classify_batch", "images", [(f"{i}.png", png(images[i])) for i in range(5)])
    assert status == 200 and len(batch["results"]) == 5
    assert len({result["request_id"] for result in batch["results"]}) == 5  # one per image, for feedback
    assert batch["results"][0]["predictions"] == body["predictions"]


def registry_ref(project: Project):
    from cvops.data.prepare import load_dataset_ref

    return load_dataset_ref(project.prepared_dir)


def test_served_predictions_match_offline_ones(server, served_project) -> None:
    project, registry = served_project
    ref = registry_ref(project)
    images, labels, _ = load_split(ref, "test")
    onnx_path = Path(registry.get("1").tags["onnx_shipped"].removeprefix("file://"))
    pre = read_preprocessing(onnx_path)
    offline = predict_logits(session(onnx_path), model_inputs(images[:20], pre.mean, pre.std)).argmax(axis=1)
    # the served path starts from encoded files of the prepared images; PNG is lossless, so the pixels agree
    files = [(f"{i}.png", png(images[i])) for i in range(20)]
    status, body = server.post_files("/classify_batch", "images", files)
    assert status == 200
    served = [pre.class_names.index(result["predictions"][0]["label"]) for result in body["results"]]
    assert served == offline.tolist()
    assert np.mean(np.array(served) == labels[:20]) >= 0.8


@pytest.mark.parametrize(
    ("how", "status", "words"),
    [
        ("corrupt bytes", 400, "not a readable image"),
        ("truncated png", 400, "corrupt image"),
        ("text file", 400, "not a readable image"),
        ("empty file", 400, "empty image"),
        ("empty body", 400, "send exactly one"),
        ("a JSON field the endpoint does not define", 400, "unknown field 'picture'"),
        ("a JSON array", 400, "send a JSON object"),
        ("a number as image_base64", 400, "'image_base64' must be a string"),
        ("a file under image_base64", 400, "must be text, not a file"),
        ("several raw images to the batch endpoint", 415, "a raw body holds one image"),
        ("file field sent as text", 400, "must be a file upload"),
        ("file under an undefined field", 400, "unknown field 'picture'"),
        ("two files under image", 400, "2 files under 'image'"),
        ("form-urlencoded body", 415, "content type application/x-www-form-urlencoded"),
        ("a wrong content type", 415, "content type text/csv"),
        ("bad base64", 400, "not valid base64"),
        ("data URI that is not base64", 400, "must be base64"),
        ("non-UTF-8 JSON", 400, ""),
        ("gif", 415, "unsupported image format GIF"),
        ("pixel bomb", 413, "over the limit"),
        ("body too large", 413, "request body over"),
        ("batch too large", 413, "at most"),
        ("one bad image in a batch", 400, "image 1:"),
        ("a detector's endpoint", 404, "this service serves a classifier: POST /classify or /classify_batch"),
        ("render=1 on a classifier", 400, "render=1 draws a detector's boxes"),
    ],
)
def test_bad_requests_get_4xx_json_and_the_service_stays_up(server, how: str, status: int, words: str) -> None:
    good = png(np.full((8, 8, 3), 100, dtype=np.uint8))
    send = {
        "corrupt bytes": lambda: server.post_files("/classify", "image", [("x.png", b"\x89PNG\r\n\x1a\nxxxx")]),
        "truncated png": lambda: server.post_files("/classify", "image", [("x.png", noise_png()[:-200])]),
        "text file": lambda: server.post_files("/classify", "image", [("x.txt", b"hello, not an image")]),
        "empty file": lambda: server.post_files("/classify", "image", [("x.png", b"")]),
        "empty body": lambda: server.request("/classify", b"", {"Content-Type": "application/json"}),
        "a JSON field the endpoint does not define": lambda: server.post_json("/classify", {"picture": b64(good)}),
        "a JSON array": lambda: server.post_json("/classify", [b64(good)]),
        "a number as image_base64": lambda: server.post_json("/classify", {"image_base64": 7}),
        "a file under image_base64": lambda: server.post_files("/classify", "image_base64", [("x.png", good)]),
        "several raw images to the batch endpoint": lambda: server.request(
            "/classify_batch", good + good, {"Content-Type": "image/png"}
        ),
        "file field sent as text": lambda: server.request(
            "/classify",
            b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\nhello\r\n--b--\r\n',
            {"Content-Type": "multipart/form-data; boundary=b"},
        ),
        "file under an undefined field": lambda: server.post_files("/classify", "picture", [("x.png", good)]),
        "two files under image": lambda: server.post_files("/classify", "image", [("a.png", good), ("b.png", good)]),
        "form-urlencoded body": lambda: server.request(
            "/classify", b"image_base64=" + b64(good).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        ),
        "a wrong content type": lambda: server.request("/classify", b"a,b\n1,2\n", {"Content-Type": "text/csv"}),
        "bad base64": lambda: server.post_json("/classify", {"image_base64": "%%%not base64%%%"}),
        "data URI that is not base64": lambda: server.post_json("/classify", {"image_base64": "data:image/png,abc"}),
        "non-UTF-8 JSON": lambda: server.request(
            "/classify", b'{"image_base64": "\xff\xfe"}', {"Content-Type": "application/json"}
        ),
        "gif": lambda: server.post_files("/classify", "image", [("x.gif", png(np.zeros((8, 8, 3), np.uint8), "GIF"))]),
        "pixel bomb": lambda: server.post_files("/classify", "image", [("x.png", bomb())]),
        "body too large": lambda: server.declare_body("/classify", 21_000_000),
        "batch too large": lambda: server.post_json("/classify_batch", {"images_base64": [b64(good)] * 33}),
        "one bad image in a batch": lambda: server.post_files(
            "/classify_batch", "images", [("a.png", good), ("b.png", b"junk")]
        ),
        "a detector's endpoint": lambda: server.post_files("/detect", "image", [("ok.png", good)]),
        "render=1 on a classifier": lambda: server.post_files("/classify?render=1", "image", [("ok.png", good)]),
    }[how]
    got, body = send()
    assert got == status, body
    assert isinstance(body, dict) and words in body["error"]
    assert server.get("/healthz")[0] == 200
    assert server.post_files("/classify", "image", [("ok.png", good)])[0] == 200


def bomb() -> bytes:
    """A tiny PNG whose header declares 10,000 x 10,000 pixels (100 M, over the 40 M limit)."""
    import struct
    import zlib

    data = bytearray(png(np.zeros((8, 8, 3), np.uint8)))
    header = b"IHDR" + struct.pack(">II", 10_000, 10_000) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def noise_png() -> bytes:
    return png(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))


def test_metrics_count_requests_and_predictions_by_model_version(server) -> None:
    server.post_files("/classify", "image", [("ok.png", png(np.full((8, 8, 3), 50, dtype=np.uint8)))])
    status, text = server.get("/metrics")
    assert status == 200
    assert 'cvops_requests_total{arm="champion",endpoint="classify",status="200"}' in text
    assert 'cvops_model_info{arm="champion",model_version="1"} 1.0' in text and "cvops_predictions_total{" in text
    assert "cvops_request_seconds_bucket" in text


def test_every_prediction_lands_in_the_inference_log(server, served_project) -> None:
    project, _ = served_project
    log_dir = project.root / project.params().serve.inference_log
    before = len(read_inference_log(log_dir))
    pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    server.post_files("/classify_batch", "images", [("a.png", png(pixels)), ("b.png", png(pixels))])
    deadline = time.monotonic() + 10
    while len(rows := read_inference_log(log_dir)) < before + 2:
        assert time.monotonic() < deadline, "the inference log did not grow"
        time.sleep(0.2)
    row = rows.iloc[-1]
    assert row["model_version"] == "1" and row["label"] and 0 <= row["score"] <= 1
    assert row["brightness"] == pytest.approx(200, abs=1) and row["contrast"] == pytest.approx(0, abs=1e-3)
    assert (row["width"], row["height"]) == (8, 8)


def test_feedback_records_true_labels_and_capture_keeps_the_images_it_selects(served_project, tmp_path) -> None:
    """Capture on (a third of the images, and every one under 0.5 confidence): `cvops traffic` with 25% feedback
    and a truth file, feedback sent the moment each answer arrives, the refusals of POST /feedback and of
    `cvops feedback import`, and the captured bytes against the sent ones."""
    project, _ = served_project
    log_dir = project.root / project.params().serve.inference_log
    store = CaptureStore(project.capture_store(project.params().serve))
    since = datetime.now(UTC)
    started = Server(project.root, "-S", "serve.capture.fraction=0.34", "-S", "serve.capture.below_confidence=0.5")
    try:
        url = f"http://127.0.0.1:{started.port}"
        truth = tmp_path / "truth.csv"
        sent = cvops(
            project.root, "traffic", "--n", "40", "--feedback", "0.25", "--truth-out", str(truth), "--url", url
        )
        assert sent.returncode == 0 and "feedback 10 x 200" in sent.stdout, sent.stdout + sent.stderr[-2000:]
        truths = pd.read_csv(truth, dtype=str)
        assert list(truths.columns) == ["request_id", "label"] and len(truths) == 40 and truths["request_id"].is_unique
        labels = FeedbackStore(log_dir).labels()
        assert len(labels) == 10 and all(
            truths.set_index("request_id").loc[i, "label"] == row["label"] for i, row in labels.items()
        )

        ref = registry_ref(project)
        images, classes, _ = load_split(ref, "test")
        names = [ref.class_names[c] for c in classes]
        files = [png(image) for image in images[:30]]
        for i, data in enumerate(files):  # feedback as soon as the answer is in: never an unknown id
            status, answer = started.request("/classify", data, {"Content-Type": "image/png"})
            assert status == 200
            assert started.post_json("/feedback", {"request_id": answer["request_id"], "label": names[i]}) == (
                200,
                {"request_id": answer["request_id"], "label": names[i], "recorded": True},
            )
        rows = read_inference_log(log_dir, since=since, answers=True)
        captured = rows[rows["capture"].notna()]
        assert (rows.loc[rows["score"] < 0.5, "capture"].notna()).all()  # every unsure answer
        sure = rows[rows["score"] >= 0.5]  # of the others, a random third
        assert binomtest(int(sure["capture"].notna().sum()), len(sure), 0.34).pvalue > 1e-3, len(captured)
        direct = rows.tail(30).reset_index(drop=True)
        for i in direct.index[direct["capture"].notna()]:
            assert store.read(direct.loc[i, "capture"]) == files[i]  # the very bytes the client sent
            assert direct.loc[i, "capture"].endswith(f"/{direct.loc[i, 'request_id']}.png")

        known = direct.loc[0, "request_id"]
        for payload, status, words in [
            ({"request_id": "0" * 32, "label": "1"}, 404, "unknown request_id"),
            ({"request_id": "not-an-id", "label": "1"}, 404, "unknown request_id"),
            ({"request_id": known, "label": "cat"}, 400, "unknown label 'cat'"),
            ({"request_id": known}, 400, "send a JSON object"),
            ({"request_id": known, "label": "1", "note": "x"}, 400, "unknown field 'note'"),
            ([known, "1"], 400, "send a JSON object"),
        ]:
            got, body = started.post_json("/feedback", payload)
            assert got == status and words in body["error"], (payload, body)
        assert started.request("/feedback", b"{", {"Content-Type": "application/json"})[0] == 400
        assert started.post_json("/feedback", {"request_id": known, "label": "9"})[0] == 200  # a correction
        assert FeedbackStore(log_dir).labels()[known]["label"] == "9"

        bad = tmp_path / "bad.csv"
        bad.write_text(f"request_id,label\n{known},1\n{'0' * 32},2\n")
        before = FeedbackStore(log_dir).labels()
        assert_one_line_error(cvops(project.root, "feedback", "import", str(bad)), 14, "unknown request_id")
        assert FeedbackStore(log_dir).labels() == before  # nothing of the refused file
        imported = cvops(project.root, "feedback", "import", str(truth))
        assert imported.returncode == 0 and "recorded 40 true labels" in imported.stdout, imported.stderr
    finally:
        started.stop()


def test_token_required_when_set(served_project) -> None:
    project, _ = served_project
    guarded = Server(project.root, token="s3cret")
    try:
        good = {"image_base64": b64(png(np.full((8, 8, 3), 9, dtype=np.uint8)))}
        assert guarded.post_json("/classify", good)[0] == 401
        status, body = guarded.post_json("/classify", good, token="wrong")
        assert status == 401 and "token" in body["error"]
        assert guarded.post_json("/classify", good, token="s3cret")[0] == 200
        assert guarded.post_json("/feedback", {"request_id": "0" * 32, "label": "1"})[0] == 401
        assert guarded.get("/healthz")[0] == 200  # probes stay open for the orchestrator
    finally:
        guarded.stop()


def test_serve_runtime_openvino_answers_as_onnxruntime_does(server, served_project) -> None:
    """(After the metrics test: a second service on the checkout resets the first's multiprocess metrics.)"""
    project, _ = served_project
    images, _, _ = load_split(registry_ref(project), "test")
    files = [(f"{i}.png", png(images[i])) for i in range(20)]
    started = Server(project.root, "-S", "serve.runtime=openvino")
    try:
        status, openvino = started.post_files("/classify_batch", "images", files)
    finally:
        started.stop()
    assert status == 200, openvino
    _, onnxruntime = server.post_files("/classify_batch", "images", files)
    for mine, theirs in zip(openvino["results"], onnxruntime["results"], strict=True):
        assert [p["label"] for p in mine["predictions"]] == [p["label"] for p in theirs["predictions"]]
        assert np.allclose(
            [p["score"] for p in mine["predictions"]], [p["score"] for p in theirs["predictions"]], atol=1e-4
        )


def test_package_stores_the_shipped_onnx_and_builds_a_bento(served_project) -> None:
    project, registry = served_project
    result = cvops(project.root, "package", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    tags = registry.get("1").tags
    model_name, model_version = tags["bentoml_model"].split(":")
    stored = project.bentoml_home / "models" / model_name / model_version
    onnx_file = Path(tags["onnx_shipped"].removeprefix("file://"))
    assert (stored / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert "model_version: '1'" in (stored / "model.yaml").read_text()
    bento_name, bento_version = tags["bento"].split(":")
    assert bento_name == project.params().registry.bento_name
    bento = project.bentoml_home / "bentos" / bento_name / bento_version
    assert tags["bentoml_model"] in (bento / "bento.yaml").read_text()
    assert (bento / "src" / "cvops" / "serving" / "service.py").is_file()
    installed = (bento / "env" / "python" / "requirements.txt").read_text().lower()
    assert "onnxruntime==" in installed and "bentoml==" in installed
    for heavy in ("torch", "timm", "scikit-learn", "albumentations", "mlflow", "pandas"):
        assert f"{heavy}==" not in installed, f"the bento installs {heavy}"


def test_batch_inference_scores_a_folder_with_the_champion(served_project, tmp_path: Path) -> None:
    project, registry = served_project
    assert cvops(project.root, "init").returncode == 0
    images, _, _ = load_split(registry_ref(project), "test")
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        (folder / "sub" / f"{i}.png").write_bytes(png(images[i]))
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / ".DS_Store").write_bytes(b"\0")  # hidden: no row
    log_dir = project.root / project.params().serve.inference_log
    before = len(read_inference_log(log_dir))
    output = tmp_path / "scored.parquet"

    result = cvops(project.root, "run", "batch-inference", "--input", str(folder), "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "scored 3 of 4 files" in result.stdout
    frame = pd.read_parquet(output)
    assert list(frame.columns) == ["path", "request_id", "label", "score", "model_version", "error"]
    assert set(frame["model_version"]) == {registry.alias("champion").version}
    assert frame.set_index("path").loc["notes.txt", "error"].startswith("not a readable image")
    assert frame["label"].notna().sum() == 3
    logged = read_inference_log(log_dir).tail(3)
    assert len(read_inference_log(log_dir)) == before + 3
    assert set(logged["request_id"]) == set(frame["request_id"].dropna())
    labels = tmp_path / "labels.csv"  # the true labels of batch predictions come back by request id too
    frame.dropna(subset=["request_id"]).assign(label="3")[["request_id", "label"]].to_csv(labels, index=False)
    assert cvops(project.root, "feedback", "import", str(labels)).returncode == 0
    assert_one_line_error(cvops(project.root, "run", "batch-inference", "--input", str(tmp_path / "nope")), 3, "nope")
    assert_one_line_error(cvops(project.root, "run", "batch-inference", "--input", "gs://b/x"), 2, "s3://")


def test_a_file_that_cannot_be_read_keeps_its_row_and_a_folder_without_images_still_gets_its_file(
    served_project, tmp_path: Path
) -> None:
    project, registry = served_project
    # a file gone since it was listed (or, on Ray, not visible on the actor's node): its row says why
    predictor = load_served(resolve(registry, "champion", project.onnx_cache), 32, DetectParams().served)
    (row,) = score_files(predictor, [("gone.png", str(tmp_path / "gone.png"))], 10**6)
    assert row == {"path": "gone.png", "error": "could not read the file: No such file or directory"}

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no image here")
    output = tmp_path / "scored.csv"
    assert cvops(project.root, "init").returncode == 0
    result = cvops(project.root, "run", "batch-inference", "--input", str(folder), "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "scored 0 of 1 files" in result.stdout
    frame = pd.read_csv(output)
    assert list(frame["path"]) == ["readme.txt"] and frame["label"].isna().all()
    assert frame["error"][0].startswith("not a readable image")


def wait_for(condition, what: str, log: Path, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds:.0f} s: {log.read_text()[-2000:]}"
        time.sleep(0.05)


def test_canary_share_sticky_keys_paired_shadow_and_compare_live(served_project) -> None:
    """The challenger (2) as canary for 30% of requests and as shadow of all the champion's (1): the share lies
    in its binomial interval, a key always reaches the same arm, every champion answer has its shadow row, and
    compare-live reads it all; promoting the canary ends the canary arm."""
    project, registry = served_project
    assert registry.alias("challenger").version == "2"
    assert_one_line_error(cvops(project.root, "serve", "--canary", "1"), 9, "already the champion")
    assert_one_line_error(cvops(project.root, "serve", "--canary", "previous"), 2, "serve.canary.version")
    images, _, _ = load_split(registry_ref(project), "test")
    payloads = [{"image_base64": b64(png(image))} for image in images[:60]]
    since = datetime.now(UTC)
    started = Server(project.root, "--canary", "challenger", "--canary-fraction", "0.3", "--shadow", "2")
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: started.post_json("/classify", payloads[i % 60]), range(300)))
        assert {status for status, _ in answers} == {200}
        arms = Counter((body["arm"], body["model_version"]) for _, body in answers)
        assert set(arms) == {("champion", "1"), ("canary", "2")}
        assert binomtest(arms["canary", "2"], 300, 0.3).pvalue > 1e-3, arms  # fails wrongly 1 time in 1000

        def arm_of(key: str) -> set[str]:
            return {
                started.request(
                    "/classify",
                    json.dumps(payloads[0]).encode(),
                    {"Content-Type": "application/json", "X-Request-Key": key},
                )[1]["arm"]
                for _ in range(3)
            }

        keyed = [arm_of(f"user-{i}") for i in range(30)]
        assert all(len(arms) == 1 for arms in keyed)  # sticky
        assert {"champion", "canary"} == set().union(*keyed)

        log_dir = project.root / project.params().serve.inference_log
        answered = sum(body["arm"] == "champion" for _, body in answers) + sum("champion" in a for a in keyed) * 3

        def rows() -> pd.DataFrame:
            return read_inference_log(log_dir, since=since)

        wait_for(
            lambda: "arm" in (r := rows()) and (r["arm"] == "shadow").sum() >= answered,
            "a shadow row for every champion answer",
            started.log,
        )
        logged = rows()
        shadow, champion = logged[logged["arm"] == "shadow"], logged[logged["arm"] == "champion"]
        assert set(shadow["request_id"]) == set(champion["request_id"]) and len(shadow) == answered
        assert set(shadow["model_version"].astype(str)) == {"2"} and (logged["status"] == 200).all()
        canary_ids = {body["request_id"] for _, body in answers if body["arm"] == "canary"}
        assert canary_ids <= set(logged.loc[logged["arm"] == "canary", "request_id"])
        monitored = read_inference_log(log_dir, since=since, answers=True)
        assert len(monitored) == len(logged) - len(shadow)  # monitoring sees what clients received, once
        _, metrics = started.get("/metrics")
        assert f'cvops_shadow_requests_total{{outcome="scored"}} {float(answered)}' in metrics
        assert re.search(r'cvops_model_info\{arm="canary",model_version="2"[^}]*\} 1\.0', metrics), metrics  # (and pid)

        # two arms that serve one model "differ" by chance at up to the false-alarm rate (error rate, label mix and
        # scores, each at a third of it): at 0.3%, a wrong failure in at most 1 run of 300 (at the default 5%: 1 in 20)
        project.set_params(["monitor.false_alarm_rate=0.003"])
        result = cvops(project.root, "models", "compare-live", "--since", since.isoformat(), "--min-requests", "50")
        assert result.returncode == 0, result.stderr[-2000:]
        # the same model under two version numbers: identical predictions, so no difference and full agreement
        assert "canary vs champion: no difference found" in result.stdout, result.stdout
        assert "shadow vs champion: predicts the champion's label on 100.0%" in result.stdout, result.stdout
        page = Path(result.stdout.split("report: ")[1].strip())
        assert "Live comparison" in page.read_text() and "data:image/png;base64," in page.read_text()
        run = mlflow.search_runs(experiment_names=["cvops"], filter_string="tags.pipeline = 'compare-live'").iloc[0]
        assert (
            run["metrics.shadow_agreement"] == 1.0
            and run["metrics.canary_predictions"] == (logged["arm"] == "canary").sum()
        )
        scarce = cvops(
            project.root, "models", "compare-live", "--since", since.isoformat(), "--min-requests", "10000", "--json"
        )
        assert scarce.returncode == 0, scarce.stderr[-2000:]
        scarce_json = json.loads(scarce.stdout)
        jsonschema.validate(scarce_json, schema("models-compare-live"))
        (canary,) = [test for test in scarce_json["tests"] if test["arm"] == "canary"]
        assert not canary["conclusive"] and "too little traffic to conclude" in canary["verdict"], canary
        empty = cvops(project.root, "models", "compare-live", "--since", "2099-01-01")  # a window with no traffic
        assert_one_line_error(empty, 3, "no predictions logged since 2099-01-01")

        registry.promote("2", reviewer="test", note="the canary did well")  # the challenger alias goes with it
        swapped = ("champion", "2")

        def served(arm: str, version: str) -> bool:  # by any worker: the gauge is the max over the live workers
            gauge = rf'cvops_model_info\{{arm="{arm}",model_version="{version}"[^}}]*\}} 1\.0'
            return re.search(gauge, started.get("/metrics")[1]) is not None

        wait_for(  # every worker swapped (each polls on its own): none serves the canary or version 1 any more
            lambda: not served("canary", "2") and not served("champion", "1"),
            "the swap to 2 in every worker",
            started.log,
        )
        after = [started.post_json("/classify", payloads[0])[1] for _ in range(30)]
        assert {(body["arm"], body["model_version"]) for body in after} == {swapped}  # no canary now
    finally:
        started.stop()
        if registry.alias("champion").version == "2":
            registry.rollback(reviewer="test", reason="give the later tests their champion back")


def test_a_shadow_that_fails_to_load_never_fails_an_answer(served_project) -> None:
    project, registry = served_project
    onnx_file = Path(resolve(registry, "2", project.onnx_cache).onnx_path)
    good = onnx_file.read_bytes()
    onnx_file.write_bytes(b"not an ONNX model")  # the cached copy the service loads
    since = datetime.now(UTC)
    try:
        started = Server(project.root, "--shadow", "2")
    finally:
        onnx_file.write_bytes(good)
    try:
        payload = {"image_base64": b64(png(np.full((8, 8, 3), 90, dtype=np.uint8)))}
        answers = [started.post_json("/classify", payload) for _ in range(20)]
        assert {(status, body["arm"], body["model_version"]) for status, body in answers} == {(200, "champion", "1")}
        assert "could not load version 2 as the shadow: the shadow is off" in started.log.read_text()
        assert 'arm="shadow"' not in started.get("/metrics")[1]
        log_dir = project.root / project.params().serve.inference_log
        assert "shadow" not in set(read_inference_log(log_dir, since=since)["arm"])
    finally:
        started.stop()


def test_two_workers_count_and_log_every_request_once(served_project) -> None:
    project, _ = served_project
    since = datetime.now(UTC)
    started = Server(project.root, "--workers", "2")
    try:
        loaded = "champion: cvops-classifier version 1"
        wait_for(lambda: started.log.read_text().count(loaded) == 2, "both workers loading the champion", started.log)
        images, _, _ = load_split(registry_ref(project), "test")
        files = [[(f"{i}.png", png(images[i]))] for i in range(50)]
        log_dir = project.root / project.params().serve.inference_log
        answers: list[tuple[int, dict]] = []
        with ThreadPoolExecutor(8) as pool:  # a new connection per request: the kernel spreads them, not evenly
            while len(answers) < 1000:  # rounds until both workers have answered (the first round nearly always)
                answers += pool.map(lambda i: started.post_files("/classify", "image", files[i % 50]), range(100))
                sent = len(answers)
                wait_for(lambda: len(read_inference_log(log_dir, since=since)) >= sent, "logged rows", started.log)  # noqa: B023
                if read_inference_log(log_dir, since=since)["replica"].nunique() == 2:
                    break
        assert {status for status, _ in answers} == {200}
        _, metrics = started.get("/metrics")  # the workers' counters, summed
        counted = re.search(r'cvops_requests_total\{arm="champion",endpoint="classify",status="200"\} (\S+)', metrics)
        assert counted and float(counted.group(1)) == len(answers), metrics
        rows = read_inference_log(log_dir, since=since)  # parses: no line of one worker cut into another's
        assert len(rows) == len(answers) and set(rows["request_id"]) == {body["request_id"] for _, body in answers}
        assert rows["replica"].nunique() == 2  # both workers answered, into the one file of the day
    finally:
        started.stop()


def test_champion_swap_under_traffic_fails_no_request(server, served_project) -> None:
    _, registry = served_project
    payload = {"image_base64": b64(png(np.full((8, 8, 3), 120, dtype=np.uint8)))}
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            status, body = server.post_json("/classify", payload)
            results.append((status, body.get("model_version", "") if isinstance(body, dict) else body))

    wait_for(
        lambda: server.post_json("/classify", payload)[1]["model_version"] == "1", "version 1 (champion)", server.log
    )  # an earlier test promoted 2 for a while
    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: len(results) >= 20, "20 answers from version 1", server.log)
        registry.promote("2", reviewer="test", note="swap under traffic")
        wait_for(lambda: any(version == "2" for _, version in results), "the service to swap to version 2", server.log)
        swapped = len(results)
        wait_for(lambda: len(results) >= swapped + 20, "20 more answers after the swap", server.log)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert [r for r in results if r[0] != 200] == [], server.log.read_text()[-3000:]
    versions = [version for _, version in results]
    assert versions[0] == "1" and versions[-1] == "2", server.log.read_text()[-3000:]
    assert versions[versions.index("2") :].count("1") <= len(workers)  # only requests in flight at the swap


def test_sigterm_to_cvops_serve_stops_the_bentoml_server(served_project) -> None:
    """systemd, a supervisor or `kill PID` stop `cvops serve` with SIGTERM: the BentoML server and its workers
    stop too (they used to keep running, orphaned, holding the port), and cvops exits with the server's status."""
    project, _ = served_project
    started = Server(project.root)
    with stopped_on_exit(started.process) as workers:
        workers.extend(psutil.Process(started.process.pid).children(recursive=True))
        assert workers and started.get("/readyz")[0] == 200
        started.process.send_signal(signal.SIGTERM)  # to cvops alone, not to its process group
        assert started.process.wait(timeout=60) in (0, 128 + signal.SIGTERM)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
        with pytest.raises(OSError):
            started.get("/healthz")
