"""Export targets (export.targets): the digits model for OpenVINO, LiteRT (fp32, and int8 when int8 ships) and
Core ML beside its ONNX file, each checked on the test split and timed with it; OpenVINO serving the ONNX file
gives onnxruntime's answers; a Core ML file whose spec differs from the ONNX file's is refused, naming what
differs."""

import copy
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from cvops.config import Params
from cvops.data.prepare import DatasetRef, load_split
from cvops.data.preprocess import model_inputs
from cvops.env import ONNX2TF_ENV, environment
from cvops.errors import ModelError
from cvops.evaluation.reports import QuantizationReport
from cvops.export.onnx_model import predict_logits, read_preprocessing, session
from cvops.export.quantization import calibration_images, export_onnx, quantize
from cvops.export.runtimes import OpenVinoSession
from cvops.export.targets import check_coreml, coremltools, export_targets, verified
from cvops.registry.evidence import log_quantization
from cvops.registry.modelcard import _targets
from cvops.serving.loading import ModelFiles, load
from cvops.tasks.classification.export import export_check
from cvops.tasks.detection.postprocess import PostProcess
from cvops.training.trainer import TrainResult
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(trained: TrainResult, digits: DatasetRef, tiny_params: Params, tmp_path_factory) -> QuantizationReport:
    export = tiny_params.export.model_copy(update={"targets": ["coreml", "litert", "openvino", "onnx"]})
    params = tiny_params.model_copy(update={"export": export})
    with environment({ONNX2TF_ENV: str(REPO / ".venv-litert" / "bin" / "onnx2tf")}):  # make litert (make test)
        return quantize(trained.model, digits, tmp_path_factory.mktemp("targets"), params)


def test_every_target_is_checked_on_the_test_split_and_timed_beside_the_shipped_file(report) -> None:
    onnx, openvino, litert, coreml = report.targets  # in the order of export.targets' choices, each once
    shipped = report.shipped_artifact
    assert (onnx.target, onnx.path, onnx.source) == ("onnx", shipped.path, shipped.format)
    assert onnx.accuracy == shipped.accuracy and onnx.runtime.startswith("onnxruntime ")
    assert openvino.target == "openvino" and openvino.runtime in (
        "OpenVINO 2026.4.1 (f32)",
        "OpenVINO 2026.4.1 (bf16)",
        "OpenVINO 2026.4.1 (f16)",
    )
    assert openvino.path.endswith(".xml") and Path(openvino.path).with_suffix(".bin").is_file()
    assert openvino.agreement is not None and openvino.agreement >= 0.99  # the same model, another runtime
    assert openvino.accuracy is not None and abs(openvino.accuracy - (shipped.accuracy or 0)) <= 0.01
    for measured in (onnx, openvino, litert):
        assert measured.latency_ms_b1 and measured.latency_ms_b32 and measured.latency_ms_b32 > measured.latency_ms_b1
    assert read_preprocessing(Path(openvino.path)) == read_preprocessing(Path(shipped.path))
    assert litert.path.endswith(".tflite") and litert.runtime == "LiteRT 2.3.0" and litert.source == "onnx-fp32"
    assert litert.agreement is not None and litert.agreement >= 0.99 and "one image a call" in litert.note
    assert litert.accuracy is not None and abs(litert.accuracy - (report.fp32.accuracy or 0)) <= 0.01
    assert litert.latency_ms_b32 and litert.latency_ms_b1 and litert.latency_ms_b32 > 10 * litert.latency_ms_b1
    assert coreml.target == "coreml" and Path(coreml.path).is_dir() and coreml.path.endswith(".mlpackage")
    assert coreml.accuracy is None and coreml.latency_ms_b1 is None and "not run here" in coreml.note
    assert "outputs logits, embedding" in coreml.note and coreml.size_mb > 0.1
    card = "\n".join(_targets(report))
    assert "| coreml | Core ML (Apple devices: not run here) | the torch model, fp16 |" in card
    assert f"| openvino | {openvino.runtime} | {shipped.format} |" in card


def test_openvino_serves_the_onnx_file_with_onnxruntime_s_answers(report, digits: DatasetRef) -> None:
    shipped = Path(report.shipped_artifact.path)
    model = ModelFiles(shipped, "cvops-classifier", "1", "lineage")
    images, _, _ = load_split(digits, "test")
    probabilities = {}
    for runtime in ("onnxruntime", "openvino"):
        predictor = load(model, 32, PostProcess(), threads=1, top_k=3, runtime=runtime)
        assert isinstance(predictor.session, OpenVinoSession) == (runtime == "openvino")
        probabilities[runtime] = predictor.predict(images[:32])[0]  # serve.runtime's choice, as the service loads
    assert np.abs(probabilities["openvino"] - probabilities["onnxruntime"]).max() < 1e-4  # f32 on both
    assert (probabilities["openvino"].argmax(1) == probabilities["onnxruntime"].argmax(1)).all()
    logits = predict_logits(session(shipped, 1, "openvino"), np.zeros((3, 3, 16, 16), np.float32))
    assert logits.shape == (3, 10)


def test_a_core_ml_file_that_is_not_the_onnx_file_s_model_is_refused(report, tmp_path: Path) -> None:
    coreml = report.targets[3]
    pre = read_preprocessing(Path(report.shipped_artifact.path))
    copy = tmp_path / "model.mlpackage"
    shutil.copytree(coreml.path, copy)
    assert "checked" in check_coreml(copy, pre, ["logits", "embedding"])
    with pytest.raises(ModelError, match="outputs \\['logits', 'embedding'\\], not \\['logits'\\]"):
        check_coreml(copy, pre, ["logits"])
    ct = coremltools()
    spec = ct.utils.load_spec(str(copy))
    spec.description.metadata.userDefined["cvops"] = json.dumps({"image_size": 99})
    changed = tmp_path / "changed.mlpackage"
    ct.utils.save_spec(spec, str(changed), weights_dir=str(copy / "Data" / "com.apple.CoreML" / "weights"))
    with pytest.raises(ModelError, match="its preprocessing metadata is not the ONNX file's"):
        check_coreml(changed, pre, ["logits", "embedding"])


@pytest.mark.parametrize("target", ["openvino", "litert"])
def test_a_target_that_computes_another_model_is_refused(
    report, target: str, trained: TrainResult, digits, tiny_params: Params, tmp_path
) -> None:
    """Test of the test: each target's file checked against the answers of another model (the digits model with
    its classes shifted by one, as a runtime that mislabels would answer) is refused, and passes against its own."""
    check = export_check(trained.model, digits)
    shifted = copy.deepcopy(trained.model)
    head = shifted.get_classifier()
    with torch.no_grad():
        head.weight.copy_(head.weight.roll(1, dims=0))
        head.bias.copy_(head.bias.roll(1, dims=0))
    shifted_file = session(export_onnx(shifted, check.preprocessing, tmp_path / "shifted.onnx"))
    other, own = check.answers(shifted_file), check.answers(session(Path(report.fp32.path)))
    made = next(t for t in report.targets if t.target == target)
    opened = session(Path(made.path), 1)
    with pytest.raises(ModelError, match=rf"the {target} file agrees with the file it was converted from on \d"):
        verified(check, opened, other, target, "onnx-fp32", tiny_params.quantize)
    # from an int8 file: the score may drop as much as int8's may, no more
    with pytest.raises(ModelError, match=rf"the {target} file scores accuracy 0\.\d+ on the test split, 0\.\d+ below"):
        verified(check, shifted_file, own, target, "onnx-int8", tiny_params.quantize)
    assert verified(check, opened, own, target, "onnx-fp32", tiny_params.quantize) is not None


def test_the_targets_files_and_numbers_are_logged_with_the_run(report, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        log_quantization(report)
    client = MlflowClient()
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "targets/openvino")}
    assert logged == {"targets/openvino/model.openvino.xml", "targets/openvino/model.openvino.bin"}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "targets/litert")] == ["targets/litert/model.tflite"]
    package = client.list_artifacts(run.info.run_id, "targets/coreml/model.mlpackage")
    assert "targets/coreml/model.mlpackage/Manifest.json" in {f.path for f in package}
    metrics = client.get_run(run.info.run_id).data.metrics
    assert (
        metrics["target_openvino_accuracy"] == report.targets[1].accuracy and "target_litert_latency_ms_b32" in metrics
    )
    assert "target_coreml_size_mb" in metrics and "target_coreml_accuracy" not in metrics  # not run here


def test_when_int8_ships_the_litert_file_is_int8_calibrated_on_the_same_images(
    report, trained: TrainResult, digits: DatasetRef, tiny_params: Params, tmp_path: Path
) -> None:
    """onnx2tf reads no int8 ONNX file: it quantizes the fp32 file itself, on the int8 file's calibration images,
    and the file is judged against the int8 file (the digits run ships fp32, so the int8 file stands in)."""
    assert report.int8 is not None and report.calibration_ids
    check = export_check(trained.model, digits)
    pre = check.preprocessing
    calibration = model_inputs(calibration_images(digits, report.calibration_ids), pre.mean, pre.std)
    with environment({ONNX2TF_ENV: str(REPO / ".venv-litert" / "bin" / "onnx2tf")}):
        (litert,) = export_targets(
            ["litert"],
            check,
            report.int8,
            report.fp32,
            trained.model,
            tmp_path,
            tiny_params,
            calibration,
        )
    assert litert.source == "onnx-int8" and litert.note.startswith("int8 by onnx2tf from the fp32 file")
    assert litert.accuracy is not None and report.int8.accuracy is not None
    assert report.int8.accuracy - litert.accuracy <= tiny_params.quantize.max_accuracy_drop  # checked, and passed
    opened = session(Path(litert.path))
    assert {output.name for output in opened.get_outputs()} == {"logits", "embedding"}  # the ONNX file's names
    logits = predict_logits(opened, calibration[:4])
    assert logits.shape == (4, len(pre.class_names))
