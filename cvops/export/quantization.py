"""ONNX export with a parity check, static int8 quantization (QDQ, per channel), measurement, and the
rule that decides which artifact ships.

Every ONNX file carries its preprocessing (input size, mean/std, class names) in its metadata, so a
server needs the file and nothing else. What a model answers, and how parity and quality are judged, is its
task's (`export_check` in cvops/tasks/<task>/export.py); this module runs the rest for every task.
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
import torch
from torch import nn

from cvops.config import MeasureParams, Params, QuantizeParams
from cvops.console import progress, quiet
from cvops.data.prepare import DatasetRef, load_split_images
from cvops.data.preprocess import model_inputs
from cvops.errors import DataError, ModelError
from cvops.evaluation.reports import (
    FP32,
    INT8,
    PRUNED,
    PRUNED_INT8,
    Format,
    OnnxMeasurement,
    QuantizationReport,
)
from cvops.export.exportable import exportable
from cvops.export.onnx_model import (
    INPUT,
    Preprocessing,
    read_preprocessing,
    session,
    set_metadata,
    timed,
)
from cvops.export.pruning import prune
from cvops.export.targets import export_targets
from cvops.tasks import task
from cvops.timing import Spread, latency, ratio

log = logging.getLogger(__name__)


def export_onnx(model: nn.Module, preprocessing: Preprocessing, path: Path) -> Path:
    """fp32 ONNX with a dynamic batch axis, the preprocessing in its metadata, and two outputs: the logits
    and the embedding (timm's pooled features; a model of the user's own: its head's input, when it has
    `get_classifier()`, else the logits only). A model with an `exported` method (a detector): what it returns,
    its raw outputs (`BOX_OUTPUTS`) and the embedding."""
    import onnx

    model, outputs = exportable(model)
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


def calibration_images(ref: DatasetRef, ids: list[str]) -> np.ndarray:
    """The images of a calibration subset again, by the manifest paths a report records (`calibration_ids`)."""
    images, manifest = load_split_images(ref, "train")
    where = {path: i for i, path in enumerate(manifest["path"].astype(str))}
    missing = [path for path in ids if path not in where]
    if missing:
        raise DataError(f"{len(missing)} calibration images are not in the train split (first: {missing[0]})")
    return images[[where[path] for path in ids]]


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
) -> tuple[dict[Format, OnnxMeasurement], dict[Format, Spread]]:
    """Each file's size and quality, and its batch-1 and batch-32 latency computing `outputs`, the files timed
    call by call in turns on `measure.threads` threads (cvops/timing.py). Also each file's speed-up over fp32 at
    batch 32, from the paired calls."""
    sessions = {fmt: session(path, measure.threads) for fmt, (path, _) in qualities.items()}
    single, batched = timed(sessions, inputs, measure, outputs)
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
    return measured, {fmt: ratio(batched[FP32], batched[fmt]) for fmt in sessions if fmt != FP32}


Step = tuple[str, Format, Format, float]  # a technique, the file it starts from, the file it makes, its drop limit


def steps(fmt: Format, score_metric: str, params: Params) -> tuple[list[Step], float]:
    """How a file was made from fp32, each technique with the score it may lose against the file it started
    from, and the speed-up at batch 32 the file must bring over fp32: int8's limits are quantize.*, pruning's
    prune.*; a pruned int8 file must pass both steps, and bring both speed-ups multiplied."""
    quantize, prune = params.quantize, params.prune
    int8_drop = quantize.max_drop(score_metric)
    made: dict[Format, tuple[list[Step], float]] = {
        INT8: ([("int8", FP32, INT8, int8_drop)], quantize.min_speedup),
        PRUNED: ([("pruning", FP32, PRUNED, prune.max_accuracy_drop)], prune.min_speedup),
        PRUNED_INT8: (
            [("pruning", FP32, PRUNED, prune.max_accuracy_drop), ("int8", PRUNED, PRUNED_INT8, int8_drop)],
            quantize.min_speedup * prune.min_speedup,
        ),
    }
    return made[fmt]


def choose(
    measured: dict[Format, OnnxMeasurement], params: Params, speedups: dict[Format, Spread] | None = None
) -> tuple[Format, str]:
    """One rule over every file: a file other than fp32 may ship when each technique that made it lost at most
    its allowed score against the file it started from, and the file brings at least its required speed-up at
    batch 32 over fp32 (`steps`); of those, the fastest ships, else fp32. The reason names every file's numbers.

    A speed-up is the median ratio of paired calls (`speedups`; without one, the ratio of the two medians). Its
    spread is reported, and flagged when it straddles the threshold: the two files are then within noise.
    """
    fp32 = measured[FP32]
    if len(measured) == 1:
        return FP32, "int8 quantization is off (quantize.enabled: false)"
    passing: dict[Format, float] = {}
    verdicts = []
    for fmt, candidate in measured.items():
        if fmt == FP32:
            continue
        made, minimum = steps(fmt, fp32.metric, params)
        drops = [(name, measured[before].score - measured[after].score, limit) for name, before, after, limit in made]
        paired = (speedups or {}).get(fmt)
        factor = paired.median if paired else fp32.latency_ms_b32 / candidate.latency_ms_b32
        spread = ""
        if paired is not None:
            noise = ", within noise" if paired.low < minimum <= paired.high else ""
            spread = f" [x{paired.low:.2f}-x{paired.high:.2f} over paired calls{noise}]"
        lost = ", ".join(
            f"{fp32.metric} drop {drop:+.4f}{f' by {name}' if len(drops) > 1 else ''} (max {limit:g})"
            for name, drop, limit in drops
        )
        numbers = f"{lost}, speed-up x{factor:.2f}{spread} at batch 32 (min x{minimum:g})"
        if all(drop <= limit for _, drop, limit in drops) and factor >= minimum:
            passing[fmt] = factor
            verdicts.append(f"{fmt} passes: {numbers}")
        else:
            verdicts.append(f"{fmt} rejected: {numbers}")
    if not passing:
        return FP32, "; ".join(verdicts)
    shipped = max(passing, key=lambda fmt: passing[fmt])
    return shipped, "; ".join(verdicts) + (f"; {shipped} is the fastest of them" if len(passing) > 1 else "")


def quantize(model: nn.Module, ref: DatasetRef, out_dir: Path, params: Params) -> QuantizationReport:
    """Export, check parity, quantize (calibrated on a seeded train subset); with prune.enabled, prune and
    fine-tune a copy and export and quantize it the same way; measure every file together, decide; convert what
    ships for export.targets. The task's export part (`export_check`) says what the model answers on the test
    split, and how well."""
    check = task(ref.task).export.export_check(model, ref)
    calibration: np.ndarray | None = None
    ids: list[str] = []
    if params.quantize.enabled:
        images, ids = calibration_subset(ref, params.quantize.calibration_size, params.base.seed)
        calibration = model_inputs(images, check.preprocessing.mean, check.preprocessing.std)
    answers, difference = _exported(check, model, out_dir / "model", calibration, params.quantize)
    pruned, pruning = model, None
    if params.prune.enabled:
        pruned, pruning = prune(model, ref, params)
        pruned_check = task(ref.task).export.export_check(pruned, ref)
        found, pruned_difference = _exported(
            pruned_check, pruned, out_dir / "model.pruned", calibration, params.quantize
        )
        answers |= {PRUNED if fmt == FP32 else PRUNED_INT8: answer for fmt, answer in found.items()}
        pruning = pruning.model_copy(update={"parity_max_abs_diff": pruned_difference})
    qualities = {fmt: (path, check.quality(found)) for fmt, (path, found) in answers.items()}
    measured, speedups = measure(qualities, check.inputs, params.measure, check.outputs)
    shipped, reason = choose(measured, params, speedups)
    family = (PRUNED, pruned) if shipped in (PRUNED, PRUNED_INT8) else (FP32, model)  # the shipped file's fp32
    targets = export_targets(
        params.export.targets,
        check,
        measured[shipped],
        measured[family[0]],
        family[1],
        out_dir / "targets",
        params,
        calibration,
    )
    int8_speedup = speedups.get(INT8)
    report = QuantizationReport(
        fp32=measured[FP32],
        int8=measured.get(INT8),
        pruned=measured.get(PRUNED),
        pruned_int8=measured.get(PRUNED_INT8),
        pruning=pruning,
        **check.torch_quality(),
        parity_max_abs_diff=difference,
        calibration_method=params.quantize.calibration_method,
        calibration_ids=ids,
        threads=params.measure.threads,
        shipped=shipped,
        reason=reason,
        speedup_b32_range=(int8_speedup.low, int8_speedup.high) if int8_speedup else None,
        paired_speedup_b32=int8_speedup.median if int8_speedup else None,
        pruned_speedups_b32={fmt: s.median for fmt, s in speedups.items() if fmt in (PRUNED, PRUNED_INT8)},
        targets=targets,
    )
    return _written(report, out_dir)


def _exported(
    check: Any, model: nn.Module, stem: Path, calibration: np.ndarray | None, params: QuantizeParams
) -> tuple[dict[Format, tuple[Path, Any]], float]:
    """`model`'s fp32 file (`stem`.fp32.onnx, checked against the torch model: the largest difference) and, with
    `calibration`, its int8 copy (`stem`.int8.onnx): each file's answers on the test split by `check`."""
    fp32_path = export_onnx(model, check.preprocessing, stem.with_name(f"{stem.name}.fp32.onnx"))
    answers: dict[Format, tuple[Path, Any]] = {FP32: (fp32_path, check.answers(session(fp32_path)))}
    difference = check.parity(answers[FP32][1], params)
    if calibration is not None:
        int8_path = quantize_int8(
            fp32_path, stem.with_name(f"{stem.name}.int8.onnx"), calibration, params.calibration_method
        )
        answers[INT8] = (int8_path, check.answers(session(int8_path)))
    return answers, difference


def _written(report: QuantizationReport, out_dir: Path) -> QuantizationReport:
    (out_dir / "quantization.json").write_text(report.model_dump_json(indent=2))
    (out_dir / "calibration_ids.json").write_text(json.dumps(report.calibration_ids, indent=0))
    log.info("quantization: %s", report.reason)
    return report
