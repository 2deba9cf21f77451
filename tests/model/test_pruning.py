"""Pruning the digits model (prune.*): channels really removed, the pruned model fine-tuned and exported with its
own parity check, its files measured beside the unpruned ones, and one rule choosing what ships, with the reason
naming every file."""

from pathlib import Path

import pytest
import torch

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.evaluation.reports import QuantizationReport
from cvops.export.onnx_model import predict_logits, read_preprocessing, session
from cvops.export.pruning import prune
from cvops.export.quantization import choose, quantize
from cvops.training.trainer import TrainResult

pytestmark = pytest.mark.slow


def pruning(params: Params, **prune: object) -> Params:
    return params.model_copy(update={"prune": params.prune.model_copy(update={"enabled": True, **prune})})


@pytest.fixture(scope="module")
def report(trained: TrainResult, digits: DatasetRef, tiny_params: Params, tmp_path_factory) -> QuantizationReport:
    params = pruning(tiny_params, ratio=0.5, fine_tune_epochs=1)
    return quantize(trained.model, digits, tmp_path_factory.mktemp("pruned"), params)


def test_pruning_removes_channels_and_leaves_the_trained_model_as_it_was(trained, digits, tiny_params) -> None:
    before = sum(p.numel() for p in trained.model.parameters())
    pruned, removed = prune(trained.model, digits, pruning(tiny_params, ratio=0.5, fine_tune_epochs=0))
    convolutions = [m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)]
    originals = [m for m in trained.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.out_channels for c in convolutions) < 0.6 * sum(c.out_channels for c in originals)
    assert removed.parameters_after < 0.4 * removed.parameters_before == 0.4 * before  # about (1 - 0.5)^2 of them
    assert removed.macs_after < 0.4 * removed.macs_before and removed.fine_tune_epochs == 0
    assert sum(p.numel() for p in trained.model.parameters()) == before  # a copy was pruned
    with torch.no_grad():
        assert pruned(torch.zeros(3, 3, 16, 16)).shape == (3, 10)  # the head keeps its 10 classes


def test_the_pruned_files_are_exported_checked_and_measured_beside_the_others(report, digits) -> None:
    assert [m.format for m in report.candidates()] == [
        "onnx-fp32",
        "onnx-int8",
        "onnx-pruned-fp32",
        "onnx-pruned-int8",
    ]
    assert report.pruned is not None and report.pruned_int8 is not None and report.pruning is not None
    assert (report.pruning.parity_max_abs_diff or 1.0) < 1e-3 and report.pruning.fine_tune_epochs == 1  # its own parity
    assert report.pruned.size_mb < report.fp32.size_mb / 2 and report.pruned_int8.size_mb < report.pruned.size_mb
    assert report.pruned.accuracy is not None and report.pruned.accuracy > 0.8  # fine-tuned: still reads digits
    assert read_preprocessing(Path(report.pruned.path)) == read_preprocessing(Path(report.fp32.path))
    logits = predict_logits(session(Path(report.pruned_int8.path)), torch.zeros(2, 3, 16, 16).numpy())
    assert logits.shape == (2, 10)
    assert set(report.pruned_speedups_b32) == {"onnx-pruned-fp32", "onnx-pruned-int8"}
    for fmt in ("onnx-int8", "onnx-pruned-fp32", "onnx-pruned-int8"):
        assert fmt in report.reason  # every file's numbers, whichever ships
    assert report.shipped_artifact.format == report.shipped


def test_a_pruning_that_loses_too_much_is_not_shipped_and_the_reason_says_why(report, tiny_params) -> None:
    files = {m.format: m for m in report.candidates()}
    strict = pruning(tiny_params, max_accuracy_drop=-1.0)  # nothing pruned may ship
    shipped, reason = choose(files, strict)
    assert shipped in ("onnx-fp32", "onnx-int8")
    assert "onnx-pruned-fp32 rejected: accuracy drop" in reason and "onnx-pruned-int8 rejected" in reason
    lenient = pruning(tiny_params, max_accuracy_drop=1.0, min_speedup=0.01)
    relaxed = {"min_speedup": 0.01, "max_accuracy_drop": 1.0}  # int8's own limits too: every file passes
    lenient = lenient.model_copy(update={"quantize": lenient.quantize.model_copy(update=relaxed)})
    fastest = min(files.values(), key=lambda m: m.latency_ms_b32).format
    assert choose(files, lenient)[0] == fastest  # every file passes: the fastest ships
