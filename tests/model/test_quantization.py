"""ONNX export and int8 quantization of a small model trained on real digits: parity, reproducible
calibration, the rule that picks the shipped artifact, and clear errors for broken files."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cvops.config import Params
from cvops.data.prepare import DatasetRef, load_split
from cvops.data.preprocess import model_inputs
from cvops.errors import ModelError
from cvops.evaluation.reports import QuantizationReport
from cvops.export.onnx_model import predict_logits, predict_outputs, read_preprocessing, session
from cvops.export.quantization import calibration_subset, choose, quantize, quantize_int8, sha256
from cvops.training.trainer import TrainResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(trained: TrainResult, digits: DatasetRef, tiny_params: Params, tmp_path_factory) -> QuantizationReport:
    return quantize(trained.model, digits, tmp_path_factory.mktemp("onnx"), tiny_params)


def test_onnx_fp32_matches_torch_and_carries_its_preprocessing(report, digits: DatasetRef) -> None:
    assert report.parity_max_abs_diff < 1e-3
    assert report.fp32.agreement >= 0.99
    assert report.fp32.accuracy == pytest.approx(report.torch_accuracy, abs=0.01)
    preprocessing = read_preprocessing(Path(report.fp32.path))
    assert (preprocessing.class_names, preprocessing.image_size) == (digits.class_names, digits.image_size)
    # the batch axis is dynamic: 1, 7 and 32 images all run
    fp32 = session(Path(report.fp32.path))
    for n in (1, 7, 32):
        assert predict_logits(fp32, np.zeros((n, 3, 16, 16), dtype=np.float32)).shape == (n, 10)


def test_onnx_emits_the_penultimate_layer_for_monitoring(report, trained: TrainResult, digits: DatasetRef) -> None:
    """The embedding output is the pooled features the classifier reads, in fp32 and (close to it) in int8."""
    images, _, _ = load_split(digits, "test")
    inputs = model_inputs(images[:32], *_normalization(report))
    model = trained.model.cpu().eval()
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(torch.from_numpy(inputs)), pre_logits=True).numpy()
    _, embeddings = predict_outputs(session(Path(report.fp32.path)), inputs)
    assert embeddings is not None and embeddings.shape == (32, model.num_features)
    assert np.abs(embeddings - expected).max() < 1e-3
    assert report.int8 is not None
    _, int8_embeddings = predict_outputs(session(Path(report.int8.path)), inputs)
    assert int8_embeddings is not None and np.corrcoef(int8_embeddings.ravel(), expected.ravel())[0, 1] > 0.95


def test_int8_is_smaller_close_to_fp32_and_measured(report) -> None:
    assert report.int8 is not None
    assert report.int8.size_mb < report.fp32.size_mb / 2
    assert report.int8.agreement >= 0.9
    assert report.fp32.accuracy - report.int8.accuracy < 0.05
    assert read_preprocessing(Path(report.int8.path)) == read_preprocessing(Path(report.fp32.path))
    for measured in (report.fp32, report.int8):
        assert 0 < measured.latency_ms_b1 < measured.latency_ms_b32
        assert measured.latency_ms_b1 <= measured.latency_ms_b1_high  # the median and the spread
    low, high = report.speedup_b32_range
    assert low <= report.speedup_b32() == report.paired_speedup_b32 <= high
    assert report.threads == 1  # measure.threads: fixed, whatever the machine
    assert report.shipped in ("onnx-fp32", "onnx-int8") and "over paired calls" in report.reason
    assert report.footprint().format == report.shipped


def test_calibration_subset_and_int8_file_are_reproducible(report, digits: DatasetRef, tmp_path: Path) -> None:
    images, ids = calibration_subset(digits, 64, seed=5)
    again, ids_again = calibration_subset(digits, 64, seed=5)
    assert ids == ids_again and np.array_equal(images, again) and len(set(ids)) == 64
    assert calibration_subset(digits, 64, seed=6)[1] != ids
    train_paths = set(ids) | set(calibration_subset(digits, 10_000, seed=5)[1])
    assert len(train_paths) == sum(digits.counts["train"].values())  # drawn from the train split only

    inputs = model_inputs(images, *_normalization(report))
    first = quantize_int8(Path(report.fp32.path), tmp_path / "a.onnx", inputs, "minmax")
    second = quantize_int8(Path(report.fp32.path), tmp_path / "b.onnx", inputs, "minmax")
    assert sha256(first) == sha256(second)


def _normalization(report: QuantizationReport) -> tuple[tuple[float, ...], tuple[float, ...]]:
    preprocessing = read_preprocessing(Path(report.fp32.path))
    return preprocessing.mean, preprocessing.std


def test_rule_ships_fp32_when_int8_misses_the_tolerance(report, tiny_params: Params) -> None:
    assert report.int8 is not None
    files = {report.fp32.format: report.fp32, report.int8.format: report.int8}

    def quantize_with(**limits: float) -> Params:
        return tiny_params.model_copy(update={"quantize": tiny_params.quantize.model_copy(update=limits)})

    shipped, reason = choose(files, quantize_with(max_accuracy_drop=0.0, min_speedup=1000.0))
    assert shipped == "onnx-fp32" and reason.startswith("onnx-int8 rejected") and "x1000" in reason
    lenient = quantize_with(max_accuracy_drop=1.0, min_speedup=0.001)
    assert choose(files, lenient)[0] == "onnx-int8"
    alone = {report.fp32.format: report.fp32}
    assert choose(alone, lenient) == ("onnx-fp32", "int8 quantization is off (quantize.enabled: false)")


def test_export_that_breaks_parity_fails_loudly(trained, digits, tiny_params: Params, tmp_path: Path) -> None:
    strict = tiny_params.quantize.model_copy(update={"parity_tolerance": 1e-12, "enabled": False})
    with pytest.raises(ModelError, match="ONNX export differs from the torch model"):
        quantize(trained.model, digits, tmp_path, tiny_params.model_copy(update={"quantize": strict}))


def test_missing_corrupt_or_foreign_onnx_files_get_clear_errors(report, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        session(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(Path(report.fp32.path).read_bytes()[:5000])
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        session(corrupt)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        read_preprocessing(corrupt)
    foreign = onnx.load(report.fp32.path)
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ModelError, match="no cvops preprocessing metadata"):
        read_preprocessing(tmp_path / "foreign.onnx")
