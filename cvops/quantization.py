"""ONNX export with a parity check, static int8 quantization (QDQ, per channel), measurement, and the
rule that decides which artifact ships.

Every ONNX file carries its preprocessing (input size, mean/std, class names) in its metadata, so a
server needs the file and nothing else.
"""

import contextlib
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from cvops.config import QuantizeParams
from cvops.data.prepare import DatasetRef, load_split
from cvops.data.preprocess import model_inputs
from cvops.errors import ModelError
from cvops.evaluation import Footprint, median_latency_ms
from cvops.models import normalization
from cvops.onnx_model import (
    EMBEDDING,
    INPUT,
    OUTPUT,
    Preprocessing,
    predict_logits,
    read_preprocessing,
    session,
    set_metadata,
)

log = logging.getLogger(__name__)
Format = Literal["onnx-fp32", "onnx-int8"]


class OnnxMeasurement(BaseModel):
    """One ONNX artifact measured on the test split, on this machine."""

    format: Format
    path: str
    sha256: str
    size_mb: float
    accuracy: float
    agreement: float  # top-1 agreement with the torch model
    latency_ms_b1: float
    latency_ms_b32: float


class QuantizationReport(BaseModel):
    """Both artifacts, the evidence of the export and calibration, and which one ships (and why)."""

    fp32: OnnxMeasurement
    int8: OnnxMeasurement | None
    torch_accuracy: float
    parity_max_abs_diff: float
    calibration_method: str
    calibration_ids: list[str]
    threads: int
    shipped: Format
    reason: str

    @property
    def shipped_artifact(self) -> OnnxMeasurement:
        return self.int8 if self.shipped == "onnx-int8" and self.int8 else self.fp32

    def footprint(self) -> Footprint:
        shipped = self.shipped_artifact
        return Footprint(format=shipped.format, size_mb=shipped.size_mb, latency_ms=shipped.latency_ms_b1,
                         threads=self.threads)  # fmt: skip

    def speedup_b32(self) -> float | None:
        return self.fp32.latency_ms_b32 / self.int8.latency_ms_b32 if self.int8 else None

    def summary(self) -> str:
        lines = [f"{'artifact':<10} {'accuracy':>8} {'agreement':>9} {'size MB':>8} {'b1 ms':>7} {'b32 ms':>8}"]
        for m in (self.fp32, self.int8):
            if m is not None:
                lines.append(f"{m.format:<10} {m.accuracy:>8.4f} {m.agreement:>9.4f} {m.size_mb:>8.2f} "
                             f"{m.latency_ms_b1:>7.2f} {m.latency_ms_b32:>8.2f}")  # fmt: skip
        lines.append(f"ships {self.shipped}: {self.reason} ({self.threads} threads)")
        return "\n".join(lines)


class _WithEmbedding(nn.Module):
    """A timm classifier that also returns its penultimate layer (the pooled features before the classifier)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model: Any = self.model  # timm's methods, which nn.Module does not declare
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        return model.get_classifier()(features), features


def export_onnx(model: nn.Module, preprocessing: Preprocessing, path: Path) -> Path:
    """fp32 ONNX with a dynamic batch axis, the preprocessing in its metadata, and two outputs: the logits
    and the embedding (models without timm's forward_head export the logits only)."""
    import onnx

    model = model.cpu().eval()
    outputs = [OUTPUT]
    if hasattr(model, "forward_head") and hasattr(model, "get_classifier"):
        model, outputs = _WithEmbedding(model).eval(), [OUTPUT, EMBEDDING]
    example = torch.rand(2, 3, preprocessing.image_size, preprocessing.image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter prints progress
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), input_names=[INPUT], output_names=outputs, dynamo=True, verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )  # fmt: skip
    if program is None:
        raise ModelError("the ONNX exporter returned nothing")
    proto = program.model_proto
    set_metadata(proto, preprocessing)
    onnx.save(proto, str(path))
    return path


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a fixed array of model inputs."""

    def __init__(self, inputs: np.ndarray, batch_size: int = 32) -> None:
        self.batches: Iterator[np.ndarray] = iter(
            [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT: batch}


def calibration_subset(ref: DatasetRef, size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """A seeded, stratified-by-chance sample of the train split: the images and their manifest paths."""
    images, _, manifest = load_split(ref, "train")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), size=min(size, len(images)), replace=False))
    return images[chosen], manifest.loc[chosen, "path"].astype(str).tolist()


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray, method: str) -> Path:
    """Static int8: QDQ format, per-channel weights, activations calibrated on `calibration`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_path.with_name(int8_path.stem + ".pre.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared), str(int8_path), _Calibration(calibration), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
        )  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)
    import onnx

    proto = onnx.load(str(int8_path))
    set_metadata(proto, read_preprocessing(fp32_path))
    onnx.save(proto, str(int8_path))
    return int8_path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(
    path: Path, fmt: Format, inputs: np.ndarray, labels: np.ndarray, reference: np.ndarray, runs: int
) -> tuple[OnnxMeasurement, np.ndarray]:
    """Accuracy and agreement with `reference` predictions on `inputs`, size, median latency at batch 1 and 32."""
    onnx_session = session(path, torch.get_num_threads())
    logits = predict_logits(onnx_session, inputs)
    predicted = logits.argmax(axis=1)
    b1, b32 = inputs[:1], np.resize(inputs, (32, *inputs.shape[1:]))  # b32 repeats images if the split is small
    measured = OnnxMeasurement(
        format=fmt, path=str(path), sha256=sha256(path), size_mb=path.stat().st_size / 2**20,
        accuracy=float(np.mean(predicted == labels)), agreement=float(np.mean(predicted == reference)),
        latency_ms_b1=median_latency_ms(lambda: onnx_session.run([OUTPUT], {INPUT: b1}), runs),
        latency_ms_b32=median_latency_ms(lambda: onnx_session.run([OUTPUT], {INPUT: b32}), max(3, runs // 4)),
    )  # fmt: skip
    return measured, logits


def choose(fp32: OnnxMeasurement, int8: OnnxMeasurement | None, params: QuantizeParams) -> tuple[Format, str]:
    """int8 ships when it loses at most `max_accuracy_drop` accuracy and is `min_speedup` faster at batch 32."""
    if int8 is None:
        return "onnx-fp32", "int8 quantization is off (quantize.enabled: false)"
    drop = fp32.accuracy - int8.accuracy
    speedup = fp32.latency_ms_b32 / int8.latency_ms_b32
    numbers = (
        f"accuracy drop {drop:+.4f} (max {params.max_accuracy_drop}), "
        f"speed-up x{speedup:.2f} at batch 32 (min x{params.min_speedup})"
    )
    if drop <= params.max_accuracy_drop and speedup >= params.min_speedup:
        return "onnx-int8", numbers
    return "onnx-fp32", f"int8 rejected: {numbers}"


def quantize(model: nn.Module, ref: DatasetRef, out_dir: Path, params: QuantizeParams, seed: int) -> QuantizationReport:
    """Export, check parity, quantize (calibrated on a seeded train subset), measure both, decide."""
    mean, std = normalization(model)
    preprocessing = Preprocessing(image_size=ref.image_size, mean=mean, std=std, class_names=ref.class_names)
    fp32_path = export_onnx(model, preprocessing, out_dir / "model.fp32.onnx")

    images, labels, _ = load_split(ref, "test")
    inputs = model_inputs(images, mean, std)
    with torch.no_grad():
        torch_logits = torch.cat([model.cpu().eval()(torch.from_numpy(inputs[i : i + 64]))
                                  for i in range(0, len(inputs), 64)]).numpy()  # fmt: skip
    torch_predicted = torch_logits.argmax(axis=1)
    fp32, fp32_logits = measure(fp32_path, "onnx-fp32", inputs, labels, torch_predicted, params.latency_runs)
    difference = float(np.abs(fp32_logits - torch_logits).max())
    if difference > params.parity_tolerance or fp32.agreement < params.min_parity_agreement:
        raise ModelError(
            f"ONNX export differs from the torch model: max |logit difference| {difference:.2e} "
            f"(tolerance {params.parity_tolerance:g}), top-1 agreement {fp32.agreement:.4f} "
            f"(min {params.min_parity_agreement}); the model has an op the exporter does not reproduce"
        )
    int8, ids = None, list[str]()
    if params.enabled:
        calibration, ids = calibration_subset(ref, params.calibration_size, seed)
        int8_path = quantize_int8(fp32_path, out_dir / "model.int8.onnx", model_inputs(calibration, mean, std),
                                  params.calibration_method)  # fmt: skip
        int8, _ = measure(int8_path, "onnx-int8", inputs, labels, torch_predicted, params.latency_runs)
    shipped, reason = choose(fp32, int8, params)
    report = QuantizationReport(
        fp32=fp32, int8=int8, torch_accuracy=float(np.mean(torch_predicted == labels)),
        parity_max_abs_diff=difference, calibration_method=params.calibration_method, calibration_ids=ids,
        threads=torch.get_num_threads(), shipped=shipped, reason=reason,
    )  # fmt: skip
    (out_dir / "quantization.json").write_text(report.model_dump_json(indent=2))
    (out_dir / "calibration_ids.json").write_text(json.dumps(ids, indent=0))
    log.info("quantization: %s", reason)
    return report
