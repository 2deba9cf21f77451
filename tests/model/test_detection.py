"""A detector the training pipeline trained on a small set of composed scenes (the session's `trained_scenes`)
finds the digits: its COCO mAP beats a box-free baseline's by far, and its torch post-processing keeps only
confident, non-overlapping boxes."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from cvops.config import DetectParams, Params, Project, load_params
from cvops.data.prepare import DatasetRef, load_dataset_ref
from cvops.data.preprocess import Fit, model_inputs
from cvops.data.validation import pairwise_iou
from cvops.errors import ModelError
from cvops.evaluation.evaluator import Champion, EvaluationSetup
from cvops.evaluation.reports import QuantizationReport
from cvops.export.onnx_model import read_preprocessing
from cvops.export.quantization import quantize
from cvops.monitoring.drift import detect_drift
from cvops.monitoring.reference import build_reference, load_reference
from cvops.registry.model_registry import ModelRegistry
from cvops.registry.tracking import load_trained_model, use_project_store
from cvops.serving.features import image_features
from cvops.serving.predictor import DecodedImage, decode_image
from cvops.tasks.detection.data import load_split as load_detection_split
from cvops.tasks.detection.evaluation import evaluate_detector
from cvops.tasks.detection.model import mean_average_precision, predict_boxes
from cvops.tasks.detection.postprocess import PostProcess
from cvops.tasks.detection.predictor import DetectionPredictor, render
from cvops.tasks.detection.scenes import digit_scenes_source
from cvops.training.models import normalization
from cvops.training.trainer import TrainResult
from tests.cli import cvops

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scene_checkout(trained_scenes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's detection checkout: small composed scenes, a detector trained by the pipeline."""
    return trained_scenes.copy(tmp_path_factory.mktemp("scenes") / "checkout")


@pytest.fixture(scope="module")
def scene_params(scene_checkout: Path) -> Params:
    return load_params(scene_checkout / "params.yaml", overlay=scene_checkout / "small.yaml")


@pytest.fixture(scope="module")
def scenes(scene_checkout: Path) -> DatasetRef:
    return load_dataset_ref(scene_checkout / "data" / "prepared")


@pytest.fixture(scope="module")
def detector(scene_checkout: Path, scene_params: Params) -> TrainResult:
    """The detector the training pipeline registered as version 1, with the validation losses it logged."""
    project = Project(scene_checkout)
    use_project_store(project, scene_params.mlflow.experiment)
    registry = ModelRegistry.of(project, scene_params.registry.model_name)
    info = registry.get("1")
    losses = sorted(MlflowClient().get_metric_history(info.run_id, "val_loss"), key=lambda metric: metric.step)
    return TrainResult(load_trained_model(registry.trained_model(info)), [{"val_loss": m.value} for m in losses])


def box_free_baseline(train: list[tuple[np.ndarray, np.ndarray]], images: int) -> list[dict[str, np.ndarray]]:
    """What a model that never looks at the pixels does best: every class's mean training box on every image,
    scored by how common the class is."""
    boxes = np.concatenate([b for b, _ in train])
    labels = np.concatenate([label for _, label in train])
    classes = np.unique(labels)
    mean_boxes = np.stack([boxes[labels == c].mean(0) for c in classes]).astype(np.float32)
    scores = np.array([(labels == c).mean() for c in classes], dtype=np.float32)
    return [{"boxes": mean_boxes, "scores": scores, "labels": classes} for _ in range(images)]


def test_the_detector_beats_a_box_free_baseline_on_held_out_scenes(scenes: DatasetRef, detector: TrainResult) -> None:
    images, truths, _ = load_detection_split(scenes, "test")
    mean, std = normalization(detector.model)
    found = predict_boxes(detector.model, model_inputs(images, mean, std), torch.device("cpu"))  # type: ignore[arg-type]
    trained = mean_average_precision(found, truths, scenes.class_names)
    _, train_truths, _ = load_detection_split(scenes, "train")
    baseline = mean_average_precision(box_free_baseline(train_truths, len(images)), truths, scenes.class_names)
    assert baseline["map_50"] < 0.1
    assert trained["map_50"] > baseline["map_50"] + 0.15, (trained, baseline)  # 0.25 vs 0.0004 when written
    assert trained["map"] > baseline["map"] + 0.05
    assert len(detector.history) == 6 and detector.history[-1]["val_loss"] < detector.history[0]["val_loss"]


def test_post_processing_keeps_confident_boxes_without_same_class_overlaps(
    scenes: DatasetRef, detector: TrainResult
) -> None:
    images, _, _ = load_detection_split(scenes, "val")
    mean, std = normalization(detector.model)
    post = PostProcess(score_threshold=0.3, nms_iou=0.5, max_detections=3)
    found = predict_boxes(detector.model, model_inputs(images, mean, std), torch.device("cpu"), post)  # type: ignore[arg-type]
    assert any(len(f["boxes"]) for f in found)
    for f in found:
        assert len(f["boxes"]) <= 3 and (f["scores"] >= 0.3).all()
        assert ((f["boxes"] >= 0) & (f["boxes"] <= scenes.image_size)).all()  # clipped to the input
        for label in np.unique(f["labels"]):
            same = f["boxes"][f["labels"] == label]
            overlap = pairwise_iou(same, same)[~np.eye(len(same), dtype=bool)]
            assert (overlap <= 0.5 + 1e-6).all()


def test_the_evaluation_holds_map_with_its_interval_slices_examples_and_a_paired_comparison(
    scenes: DatasetRef, detector: TrainResult, scene_params: Params, tmp_path: Path
) -> None:
    params = scene_params.evaluate.model_copy(update={"slice_by": ["background"]})
    champion = Champion(version="3", model=detector.model, class_names=scenes.class_names, image_size=scenes.image_size)
    detect = DetectParams(score_threshold=0.3)
    setup = EvaluationSetup(tmp_path, torch.device("cpu"), 0, params, scene_params.measure, detect=detect)
    evaluation = evaluate_detector(detector.model, scenes, setup, champion)  # type: ignore[arg-type]
    metrics = evaluation.metrics
    assert evaluation.task == "detection" and evaluation.num_images == len(load_detection_split(scenes, "test")[0])
    assert metrics["map_ci95_low"] - 0.01 <= metrics["map"] <= metrics["map_ci95_high"] + 0.01
    assert metrics["map_50"] >= metrics["map"] and {f"ap_{c}" for c in scenes.class_names} <= metrics.keys()
    assert 0 <= metrics["tracking_idf1"] <= 1 and Path(evaluation.tracking_png).is_file()  # evaluate.tracking
    slices = {(s.attribute, s.value): s for s in evaluation.slices}
    assert {"dark", "mid", "bright"} == {value for attribute, value in slices if attribute == "brightness"}
    assert {value for attribute, value in slices if attribute == "background"} <= {
        "plain",
        "gradient",
        "stripes",
        "blotches",
    }
    assert slices[("object_size", "small")].mean_ap == metrics["map_small"] and slices[("object_size", "small")].n
    assert all(s.accuracy is None and s.mean_ap is not None for s in evaluation.slices)
    with Image.open(evaluation.examples_png) as sheet:
        assert sheet.width > 2 * scenes.image_size
    paired = evaluation.champion
    assert paired is not None and paired.map_difference == 0.0  # the same model: no difference, on every resample
    assert paired.difference_ci95_low == paired.difference_ci95_high == 0.0
    assert "mAP" in paired.describe() and evaluation.flat_metrics()["slice_brightness_dark_map"] >= 0


@pytest.fixture(scope="module")
def quantized(
    scenes: DatasetRef, detector: TrainResult, scene_params: Params, tmp_path_factory: pytest.TempPathFactory
) -> QuantizationReport:
    onnx_dir = tmp_path_factory.mktemp("onnx")
    return quantize(detector.model, scenes, onnx_dir, scene_params)


def test_the_onnx_detector_finds_the_torch_models_boxes_and_int8_ships_by_the_map_rule(
    detector: TrainResult, scene_params: Params, quantized: QuantizationReport
) -> None:
    report, quantize_params = quantized, scene_params.quantize
    assert report.fp32.agreement >= quantize_params.min_parity_agreement
    assert report.parity_max_abs_diff <= quantize_params.parity_tolerance
    assert report.torch_map is not None and report.fp32.mean_ap == pytest.approx(report.torch_map, abs=0.005)
    assert report.int8 is not None and report.int8.agreement > 0.5 and report.fp32.metric == "mAP"
    drop = report.fp32.score - report.int8.score
    ships_int8 = (
        drop <= quantize_params.max_map_drop and (report.paired_speedup_b32 or 0) >= quantize_params.min_speedup
    )
    assert report.shipped == ("onnx-int8" if ships_int8 else "onnx-fp32") and "mAP drop" in report.reason
    preprocessing = read_preprocessing(Path(report.fp32.path))
    assert preprocessing.task == "detection" and sum(preprocessing.level_sizes) == len(detector.model.anchors)  # type: ignore[union-attr, arg-type]


def test_an_export_that_loses_the_torch_detectors_boxes_is_refused_and_nothing_ships(
    scenes: DatasetRef, detector: TrainResult, scene_params: Params, tmp_path: Path
) -> None:
    strict = scene_params.quantize.model_copy(update={"parity_tolerance": 1e-12, "enabled": False})
    with pytest.raises(ModelError, match=r"ONNX export differs from the torch detector: it finds [\d.]+ of the"):
        quantize(detector.model, scenes, tmp_path, scene_params.model_copy(update={"quantize": strict}))
    assert not (tmp_path / "quantization.json").exists()  # no report a later step could take for a pass


def test_the_served_detector_answers_in_the_pixels_of_the_image_sent(
    scenes: DatasetRef, detector: TrainResult, quantized: QuantizationReport
) -> None:
    post = PostProcess(score_threshold=0.2)
    predictor = DetectionPredictor(Path(quantized.fp32.path), "cvops-detector", "4", "abc", max_batch=8, post=post)
    scene = next(digit_scenes_source(1, seed=99).scenes)  # its own size, not the model's input size
    data = io.BytesIO()
    scene.image.save(data, format="PNG")
    pre = predictor.preprocessing
    assert pre.resize == scenes.resize  # the ONNX file carries the rule its training data was resized by
    image = decode_image(data.getvalue(), pre.image_size, 10**7, pre.resize, pre.decoder)
    assert (image.width, image.height) == scene.image.size != (scenes.image_size, scenes.image_size)
    outputs = predictor.predict(image.pixels[None])
    answered = predictor.detections(tuple(o[0] for o in outputs), image.width, image.height)
    mean, std = normalization(detector.model)
    torch_found = predict_boxes(
        detector.model,
        model_inputs(image.pixels[None], mean, std),  # type: ignore[arg-type]
        torch.device("cpu"),
        post,
    )[0]
    expected = Fit.of(image.width, image.height, scenes.image_size, scenes.resize).to_original(torch_found["boxes"])
    assert len(answered) == len(expected) > 0
    boxes = np.array([d["box"] for d in answered])
    assert (pairwise_iou(boxes, expected).max(axis=1) > 0.99).all()
    assert all(d["label"] in scenes.class_names and d["score"] >= 0.2 for d in answered)
    assert boxes[:, 2].max() <= image.width + 0.01 and boxes[:, 3].max() <= image.height + 0.01
    with Image.open(io.BytesIO(render(data.getvalue(), answered))) as drawn:
        assert drawn.size == scene.image.size
    row = predictor.log_row(image, answered, outputs[3][0])
    assert (
        row["boxes"] == len(answered)
        and 0 < row["box_area"] < 1
        and sorted(row["labels"]) == sorted(d["label"] for d in answered)
    )


def test_the_monitoring_reference_holds_the_detectors_answers_and_drift_tests_them(
    scenes: DatasetRef, quantized: QuantizationReport, scene_params: Params, tmp_path: Path
) -> None:
    post = scene_params.detect.served
    summary = build_reference(Path(quantized.fp32.path), scenes, tmp_path / "reference", 4, post)
    reference, projection = load_reference(Path(summary.directory))
    val = reference[reference["split"] == "val"]
    assert summary.model_rows == len(val) and val["boxes"].mean() > 0.5 and val["label"].isin(scenes.class_names).any()
    predictor = DetectionPredictor(
        Path(quantized.fp32.path),
        "cvops-detector",
        "5",
        "",
        max_batch=64,
        post=post,
        projection_path=Path(summary.directory) / "projection.npz",
    )
    images, _, rows = load_detection_split(scenes, "test")

    def served(pixels: np.ndarray) -> pd.DataFrame:
        """The inference-log rows the service would write for these images (sent at their original sizes)."""
        outputs, logged = predictor.predict(pixels), []
        for i, (width, height) in enumerate(zip(rows["width"], rows["height"], strict=True)):
            image = DecodedImage(pixels[i], int(width), int(height), image_features(pixels[i]))
            found = predictor.detections(tuple(o[i] for o in outputs[:3]), image.width, image.height)
            logged.append(predictor.log_row(image, found, outputs[3][i]))
        return pd.DataFrame(logged)

    # the camera zooms out: the same scenes, shrunk to a quarter of the frame on a background of their own colour
    half, border = scenes.image_size // 2, ((scenes.image_size // 4,) * 2, (scenes.image_size // 4,) * 2, (0, 0))
    zoomed = np.stack(
        [np.pad(np.asarray(Image.fromarray(image).resize((half, half))), border, mode="edge") for image in images]
    )
    params = scene_params.monitor.model_copy(update={"min_samples": 10})
    same = detect_drift(reference, projection.fingerprint, served(images), "5", params, tmp_path / "same")
    shrunk = detect_drift(reference, projection.fingerprint, served(zoomed), "5", params, tmp_path / "zoomed")
    tested = {c.column: c for c in same.columns}
    assert {"boxes", "box_area", "box_aspect", "mean_score", "box_label"} <= tested.keys()
    assert tested["boxes"].group == tested["box_label"].group == "prediction"
    assert not any(tested[c].drifted for c in ("boxes", "box_area", "mean_score", "box_label")), same.table()
    assert {c.column: c for c in shrunk.columns}["box_area"].drifted, shrunk.table()


def test_the_detector_exports_for_openvino_with_its_map_checked(scene_checkout: Path, tmp_path) -> None:
    refused = cvops(scene_checkout, "export", "1", "--format", "coreml", "-o", str(tmp_path / "coreml"))
    assert refused.returncode == 2 and "coreml is built for classifiers" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "coreml").exists()
    nowhere = {"CVOPS_ONNX2TF": str(tmp_path / "no-onnx2tf")}
    refused = cvops(scene_checkout, "export", "1", "--format", "litert", "-o", str(tmp_path / "litert"), env=nowhere)
    assert (
        refused.returncode == 2
        and "the litert target needs onnx2tf" in refused.stderr
        and "make litert" in refused.stderr
    )
    assert not (tmp_path / "litert").exists()  # refused before anything is written
    result = cvops(scene_checkout, "export", "1", "--format", "onnx", "--format", "openvino", "-o", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    onnx, openvino = json.loads((tmp_path / "targets.json").read_text())
    assert onnx["mean_ap"] > 0.05 and (tmp_path / "model.onnx").is_file()  # the shipped file, as registered
    assert openvino["target"] == "openvino" and openvino["accuracy"] is None and openvino["agreement"] > 0.9
    assert abs(openvino["mean_ap"] - onnx["mean_ap"]) < 0.02  # another runtime, the same detector
    assert (tmp_path / "model.openvino.xml").is_file() and (tmp_path / "model.openvino.bin").is_file()
    assert "openvino" in result.stdout and "OpenVINO 2026.4.1" in result.stdout
