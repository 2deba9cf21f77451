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
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cvops.config import MeasureParams, QuantizeParams
from cvops.console import progress, quiet
from cvops.data.prepare import BoxSet, DatasetRef, load_detection_split, load_split, load_split_images
from cvops.data.preprocess import model_inputs
from cvops.data.validation import pairwise_iou
from cvops.errors import ModelError
from cvops.evaluation.reports import FP32, INT8, Format, OnnxMeasurement, QuantizationReport
from cvops.export.onnx_model import (
    BOX_OUTPUTS,
    EMBEDDING,
    INPUT,
    OUTPUT,
    Preprocessing,
    detect_outputs,
    predict_logits,
    read_preprocessing,
    session,
    set_metadata,
)
from cvops.tasks.detection.model import Detector
from cvops.tasks.detection.postprocess import FOR_MAP, PostProcess, postprocess
from cvops.timing import Spread, interleaved_calls, latency, ratio
from cvops.training.models import normalization

log = logging.getLogger(__name__)
PARITY_IOU = 0.99  # a detector's fp32 ONNX box is the torch model's when they overlap this much (same class)
AGREEMENT_IOU = 0.5  # an artifact finds the torch model's object when its box overlaps this much (same class)


class _WithEmbedding(nn.Module):
    """A timm classifier that also returns its penultimate layer (the pooled features before the classifier)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model: Any = self.model  # timm's methods, which nn.Module does not declare
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        return model.get_classifier()(features), features


class _DetectorOutputs(nn.Module):
    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.exported(x)


def export_onnx(model: nn.Module, preprocessing: Preprocessing, path: Path) -> Path:
    """fp32 ONNX with a dynamic batch axis, the preprocessing in its metadata, and two outputs: the logits
    and the embedding (models without timm's forward_head export the logits only). A detector's: its raw
    outputs (`BOX_OUTPUTS`) and the embedding."""
    import onnx

    model = model.cpu().eval()
    outputs = [OUTPUT]
    if isinstance(model, Detector):
        model, outputs = _DetectorOutputs(model).eval(), [*BOX_OUTPUTS, EMBEDDING]
    elif hasattr(model, "forward_head") and hasattr(model, "get_classifier"):
        model, outputs = _WithEmbedding(model).eval(), [OUTPUT, EMBEDDING]
    example = torch.rand(2, 3, preprocessing.image_size, preprocessing.image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the exporter prints progress, and its optimiser narrates every pass at INFO
    # (a detector's anchors are a constant output, which the initializer deduplication warns it leaves alone)
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        quiet("onnxscript", "onnx_ir"),
        quiet("onnx_ir.passes.common.initializer_deduplication", level=logging.ERROR),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT],
            output_names=outputs,
            dynamo=True,
            verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    if program is None:
        raise ModelError("the ONNX exporter returned nothing")
    proto = program.model_proto
    set_metadata(proto, preprocessing)
    onnx.save(proto, str(path))
    return path


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a fixed array of model inputs."""

    def __init__(self, inputs: np.ndarray, batch_size: int = 32) -> None:
        batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
        self.batches: Iterator[np.ndarray] = iter(progress(batches, "calibration", unit="batch"))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT: batch}


def calibration_subset(ref: DatasetRef, size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """A seeded, stratified-by-chance sample of the train split: the images and their manifest paths."""
    images, manifest = load_split_images(ref, "train")
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
        # a 1-D weight the per-channel rule cannot split (the detector's GroupNorm scales) is quantized per
        # tensor, with a warning per calibration batch on the root logger
        with quiet("", level=logging.ERROR):
            quantize_static(
                str(prepared),
                str(int8_path),
                _Calibration(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method={
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }[method],
            )
    finally:
        prepared.unlink(missing_ok=True)
    import onnx

    proto = onnx.load(str(int8_path))
    set_metadata(proto, read_preprocessing(fp32_path))
    onnx.save(proto, str(int8_path))
    return int8_path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


Quality = dict[str, float]  # an artifact's score (accuracy= or mean_ap=) and agreement= with the torch model


def measure(
    qualities: dict[Format, tuple[Path, Quality]], inputs: np.ndarray, measure: MeasureParams, outputs: list[str]
) -> tuple[dict[Format, OnnxMeasurement], Spread | None]:
    """Each file's size and quality, and its batch-1 and batch-32 latency computing `outputs`, the files timed
    call by call in turns on `measure.threads` threads (cvops/timing.py). Also, with both files, the int8
    speed-up at batch 32 from the paired calls."""
    b1, b32 = inputs[:1], np.resize(inputs, (32, *inputs.shape[1:]))  # b32 repeats images if the split is small
    sessions = {fmt: session(path, measure.threads) for fmt, (path, _) in qualities.items()}

    def call(fmt: Format, batch: np.ndarray) -> Any:
        return lambda: sessions[fmt].run(outputs, {INPUT: batch})

    single = interleaved_calls({fmt: call(fmt, b1) for fmt in sessions}, measure.runs)
    batched = interleaved_calls({fmt: call(fmt, b32) for fmt in sessions}, measure.batch_runs)
    measured = {}
    for fmt, (path, quality) in qualities.items():
        b1_ms, b32_ms = latency(single[fmt]), latency(batched[fmt])
        measured[fmt] = OnnxMeasurement(
            format=fmt,
            path=str(path),
            sha256=sha256(path),
            size_mb=path.stat().st_size / 2**20,
            **quality,
            latency_ms_b1=b1_ms.median,
            latency_ms_b1_high=b1_ms.high,
            latency_ms_b32=b32_ms.median,
            latency_ms_b32_high=b32_ms.high,
        )
    both = INT8 in batched
    return measured, ratio(batched[FP32], batched[INT8]) if both else None


def choose(
    fp32: OnnxMeasurement, int8: OnnxMeasurement | None, params: QuantizeParams, speedup: Spread | None = None
) -> tuple[Format, str]:
    """int8 ships when it loses at most `max_accuracy_drop` accuracy (`max_map_drop` mAP, for a detector) and is
    `min_speedup` faster at batch 32.

    The speed-up is the median ratio of paired calls (`speedup`; without one, the ratio of the two medians).
    Its spread is reported, and flagged when it straddles the threshold: the two files are then within noise.
    """
    if int8 is None:
        return FP32, "int8 quantization is off (quantize.enabled: false)"
    drop = fp32.score - int8.score
    limit = params.max_accuracy_drop if fp32.metric == "accuracy" else params.max_map_drop
    factor = speedup.median if speedup else fp32.latency_ms_b32 / int8.latency_ms_b32
    spread = ""
    if speedup is not None:
        noise = ", within noise" if speedup.low < params.min_speedup <= speedup.high else ""
        spread = f" [x{speedup.low:.2f}-x{speedup.high:.2f} over paired calls{noise}]"
    numbers = (
        f"{fp32.metric} drop {drop:+.4f} (max {limit}), "
        f"speed-up x{factor:.2f}{spread} at batch 32 (min x{params.min_speedup})"
    )
    if drop <= limit and factor >= params.min_speedup:
        return INT8, numbers
    return FP32, f"int8 rejected: {numbers}"


def quantize(
    model: nn.Module, ref: DatasetRef, out_dir: Path, params: QuantizeParams, measure_params: MeasureParams, seed: int
) -> QuantizationReport:
    """Export, check parity, quantize (calibrated on a seeded train subset), measure both, decide."""
    if ref.task == "detection":
        return quantize_detector(model, ref, out_dir, params, measure_params, seed)  # type: ignore[arg-type]
    mean, std = normalization(model)
    preprocessing = Preprocessing(image_size=ref.image_size, mean=mean, std=std, class_names=ref.class_names)
    fp32_path = export_onnx(model, preprocessing, out_dir / "model.fp32.onnx")

    images, labels, _ = load_split(ref, "test")
    inputs = model_inputs(images, mean, std)
    with torch.no_grad():
        torch_logits = torch.cat(
            [model.cpu().eval()(torch.from_numpy(inputs[i : i + 64])) for i in range(0, len(inputs), 64)]
        ).numpy()
    torch_predicted = torch_logits.argmax(axis=1)
    predictions: dict[Format, tuple[Path, np.ndarray]] = {FP32: (fp32_path, predict_logits(session(fp32_path), inputs))}
    difference = check_parity(predictions[FP32][1], torch_logits, params)
    ids: list[str] = []
    if params.enabled:
        calibration, ids = calibration_subset(ref, params.calibration_size, seed)
        int8_path = quantize_int8(
            fp32_path, out_dir / "model.int8.onnx", model_inputs(calibration, mean, std), params.calibration_method
        )
        predictions[INT8] = (int8_path, predict_logits(session(int8_path), inputs))
    qualities = {
        fmt: (
            path,
            {
                "accuracy": float(np.mean(logits.argmax(axis=1) == labels)),
                "agreement": float(np.mean(logits.argmax(axis=1) == torch_predicted)),
            },
        )
        for fmt, (path, logits) in predictions.items()
    }
    measured, speedup = measure(qualities, inputs, measure_params, [OUTPUT])
    shipped, reason = choose(measured[FP32], measured.get(INT8), params, speedup)
    report = QuantizationReport(
        fp32=measured[FP32],
        int8=measured.get(INT8),
        torch_accuracy=float(np.mean(torch_predicted == labels)),
        parity_max_abs_diff=difference,
        calibration_method=params.calibration_method,
        calibration_ids=ids,
        threads=measure_params.threads,
        shipped=shipped,
        reason=reason,
        speedup_b32_range=(speedup.low, speedup.high) if speedup else None,
        paired_speedup_b32=speedup.median if speedup else None,
    )
    return _written(report, out_dir)


def _written(report: QuantizationReport, out_dir: Path) -> QuantizationReport:
    (out_dir / "quantization.json").write_text(report.model_dump_json(indent=2))
    (out_dir / "calibration_ids.json").write_text(json.dumps(report.calibration_ids, indent=0))
    log.info("quantization: %s", report.reason)
    return report


def onnx_detections(
    onnx_session: Any, inputs: np.ndarray, preprocessing: Preprocessing, post: PostProcess = FOR_MAP
) -> list[dict[str, np.ndarray]]:
    """A detector file's detections on normalised inputs, post-processed in numpy (as serving does)."""
    (logits, offsets, centerness, anchors), _ = detect_outputs(onnx_session, inputs)
    return postprocess(logits, offsets, centerness, anchors, preprocessing.level_sizes, preprocessing.image_size, post)


def box_agreement(
    found: list[dict[str, np.ndarray]], reference: list[dict[str, np.ndarray]], min_iou: float = PARITY_IOU
) -> tuple[float, float]:
    """The share of `reference`'s boxes that `found` has too (same class, IoU >= `min_iou`, best match each),
    and the largest score difference of those matched."""
    matched, total, worst = 0, 0, 0.0
    for mine, theirs in zip(found, reference, strict=True):
        total += len(theirs["boxes"])
        if not len(theirs["boxes"]) or not len(mine["boxes"]):
            continue
        overlaps = pairwise_iou(theirs["boxes"], mine["boxes"])
        overlaps[theirs["labels"][:, None] != mine["labels"][None, :]] = 0.0
        best = overlaps.argmax(axis=1)
        hit = overlaps[np.arange(len(best)), best] >= min_iou
        matched += int(hit.sum())
        if hit.any():
            worst = max(worst, float(np.abs(theirs["scores"][hit] - mine["scores"][best[hit]]).max()))
    return (matched / total if total else 1.0), worst


def quantize_detector(
    model: Detector, ref: DatasetRef, out_dir: Path, params: QuantizeParams, measure_params: MeasureParams, seed: int
) -> QuantizationReport:
    """`quantize` for a detector: its fp32 file must find the torch model's boxes (numpy post-processing on
    the ONNX outputs against torchvision's on the torch outputs), and int8 ships on the mAP drop and speed-up."""
    from cvops.tasks.detection.model import predict_boxes

    mean, std = normalization(model)
    preprocessing = Preprocessing(
        image_size=ref.image_size,
        mean=mean,
        std=std,
        class_names=ref.class_names,
        task="detection",
        level_sizes=model.level_sizes,
    )
    fp32_path = export_onnx(model, preprocessing, out_dir / "model.fp32.onnx")
    images, resized, rows = load_detection_split(ref, "test")
    inputs = model_inputs(images, mean, std)
    torch_found = predict_boxes(model, inputs, torch.device("cpu"))
    found: dict[Format, tuple[Path, list[dict[str, np.ndarray]]]] = {
        FP32: (fp32_path, onnx_detections(session(fp32_path), inputs, preprocessing))
    }
    difference = check_box_parity(found[FP32][1], torch_found, params)
    ids: list[str] = []
    if params.enabled:
        calibration, ids = calibration_subset(ref, params.calibration_size, seed)
        int8_path = quantize_int8(
            fp32_path, out_dir / "model.int8.onnx", model_inputs(calibration, mean, std), params.calibration_method
        )
        found[INT8] = (int8_path, onnx_detections(session(int8_path), inputs, preprocessing))
    qualities, torch_map = _detector_qualities(found, torch_found, resized, rows, ref)
    measured, speedup = measure(qualities, inputs, measure_params, list(BOX_OUTPUTS))
    shipped, reason = choose(measured[FP32], measured.get(INT8), params, speedup)
    report = QuantizationReport(
        fp32=measured[FP32],
        int8=measured.get(INT8),
        torch_map=torch_map,
        parity_max_abs_diff=difference,
        calibration_method=params.calibration_method,
        calibration_ids=ids,
        threads=measure_params.threads,
        shipped=shipped,
        reason=reason,
        speedup_b32_range=(speedup.low, speedup.high) if speedup else None,
        paired_speedup_b32=speedup.median if speedup else None,
    )
    return _written(report, out_dir)


def _detector_qualities(
    found: dict[Format, tuple[Path, list[dict[str, np.ndarray]]]],
    torch_found: list[dict[str, np.ndarray]],
    resized: list[BoxSet],
    rows: pd.DataFrame,
    ref: DatasetRef,
) -> tuple[dict[Format, tuple[Path, Quality]], float]:
    """Each file's test mAP (scored in the original images' pixels) and agreement with the torch model's boxes,
    and the torch model's own test mAP."""
    from cvops.tasks.detection.evaluation import found_in_originals, originals
    from cvops.tasks.detection.model import mean_average_precision

    truths = originals(resized, rows, ref.image_size)

    def quality(detections: list[dict[str, np.ndarray]]) -> float:
        scaled = found_in_originals(detections, rows, ref.image_size)
        return mean_average_precision(scaled, truths, ref.class_names)["map"]

    qualities: dict[Format, tuple[Path, Quality]] = {
        fmt: (path, {"mean_ap": quality(d), "agreement": box_agreement(d, torch_found, AGREEMENT_IOU)[0]})
        for fmt, (path, d) in found.items()
    }
    return qualities, quality(torch_found)


def check_parity(onnx_logits: np.ndarray, torch_logits: np.ndarray, params: QuantizeParams) -> float:
    """The fp32 ONNX file must reproduce the torch model, or the export changed the model; returns the largest
    logit difference."""
    difference = float(np.abs(onnx_logits - torch_logits).max())
    agreement = float(np.mean(onnx_logits.argmax(axis=1) == torch_logits.argmax(axis=1)))
    if difference > params.parity_tolerance or agreement < params.min_parity_agreement:
        raise ModelError(
            f"ONNX export differs from the torch model: max |logit difference| {difference:.2e} "
            f"(tolerance {params.parity_tolerance:g}), top-1 agreement {agreement:.4f} "
            f"(min {params.min_parity_agreement}); the model has an op the exporter does not reproduce"
        )
    return difference


def check_box_parity(
    onnx_found: list[dict[str, np.ndarray]], torch_found: list[dict[str, np.ndarray]], params: QuantizeParams
) -> float:
    """The fp32 ONNX detector must find the torch model's boxes with the same scores, or the export changed the
    model; returns the largest score difference of the boxes both find."""
    agreement, difference = box_agreement(onnx_found, torch_found)
    if agreement < params.min_parity_agreement or difference > params.parity_tolerance:
        raise ModelError(
            f"ONNX export differs from the torch detector: it finds {agreement:.4f} of the torch "
            f"model's boxes (min {params.min_parity_agreement}), scores differ by up to "
            f"{difference:.2e} (tolerance {params.parity_tolerance:g})"
        )
    return difference
