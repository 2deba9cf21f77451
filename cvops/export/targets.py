"""Export targets (`export.targets`, `cvops export V --format F`): the shipped model for other runtimes, each
file checked on the test split against the ONNX file it was made from and timed in turns with it.

- **onnx**: the shipped ONNX file itself, run by onnxruntime (what every other target is compared with).
- **openvino**: OpenVINO's IR (`.xml` + `.bin`) converted from the shipped ONNX file, int8 kept when int8 ships;
  the runtime Intel CPUs are fastest on (`serve.runtime: openvino` serves the ONNX file with it).
- **litert**: a LiteRT (TFLite) file converted from the fp32 ONNX file of the shipped model by onnx2tf, which
  runs in an environment of its own (`make litert`; its TensorFlow pins clash with cvops's); what Android runs.
  When int8 ships, it is int8 too, calibrated by onnx2tf on the int8 file's calibration images, and checked
  against the int8 file; else fp32. It takes one image a call.
- **coreml**: an ML Program (`.mlpackage`, fp16, Apple's default) converted from the torch model by coremltools
  (Core ML reads no ONNX). Core ML runs on Apple devices only: here it is converted and its spec checked
  (input, outputs, batch range, the preprocessing in its metadata), not run. coremltools is an optional extra.

Every target that runs here is refused unless it computes the model of the file it was made from (`verified`),
then scored like the ONNX files (the task's `export_check`: accuracy or mAP, agreement with the torch model) and
timed with that file in one interleaved measurement (cvops/timing.py).
"""

import hashlib
import logging
import shutil
import subprocess
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvops.config import TARGETS, Params, QuantizeParams, Target
from cvops.console import quiet
from cvops.errors import ConfigError, ModelError
from cvops.evaluation.reports import FP32, INT8, PRUNED, PRUNED_INT8, Format, OnnxMeasurement, TargetMeasurement
from cvops.export.exportable import exportable
from cvops.export.onnx_model import INPUT, METADATA_KEY, Preprocessing, Session, session, timed
from cvops.export.runtimes import (
    COREML_EXTRA,
    ONNX2TF_SETUP,
    LiteRtSession,
    OpenVinoSession,
    explicit_pools,
    onnx2tf,
    openvino,
    read_model,
)
from cvops.timing import latency

COREML_MAX_BATCH = 64  # the batch sizes a Core ML file accepts: 1 to this
ONE_A_CALL = "one image a call (onnx2tf writes a batch of one): batch 32 is 32 calls"
LITERT_NOTE = f"a LiteRT file takes {ONE_A_CALL}"
LITERT_INT8_NOTE = f"int8 by onnx2tf from the fp32 file, calibrated on the int8 file's images; {ONE_A_CALL}"


def export_targets(
    targets: list[Target],
    check: Any,
    shipped: OnnxMeasurement,
    float_file: OnnxMeasurement,
    model: nn.Module,
    out_dir: Path,
    params: Params,
    calibration: np.ndarray | None = None,
) -> list[TargetMeasurement]:
    """Each of `targets` for the shipped file (`shipped`; `float_file`: the fp32 file of the same model, which
    litert is made from, as onnx2tf reads no int8 file; `calibration`: the int8 file's calibration images, model
    inputs, with which litert is made int8 when int8 ships; `model`: the torch model, which coreml is made from),
    written in `out_dir`, checked by `check` (the task's export check) against the file it stands for
    (`verified`, with the parity limits of params.quantize) and timed in turns with that file (params.measure)."""
    wanted = [t for t in TARGETS if t in targets]  # each once, in a fixed order
    if not wanted:
        return []
    litert_calibration = calibration if shipped.format in (INT8, PRUNED_INT8) else None
    litert_for = shipped if litert_calibration is not None else float_file  # the file a litert file stands for
    sources: dict[Target, OnnxMeasurement] = {
        t: litert_for if t == "litert" else shipped for t in wanted if t != "coreml"
    }
    files = {
        target: _converted(target, sources, float_file, litert_calibration, model, check.preprocessing, out_dir)
        for target in wanted
    }
    made_from = {m.format: Path(m.path) for m in sources.values()}
    sessions: dict[str, Session] = {fmt: session(path, params.measure.threads) for fmt, path in made_from.items()}
    reference = {fmt: check.answers(sessions[fmt]) for fmt in made_from}
    answers = {"onnx": reference[shipped.format]}
    for target, source in sources.items():
        if target != "onnx":
            sessions[target] = session(files[target], params.measure.threads)
            answers[target] = verified(
                check, sessions[target], reference[source.format], target, source.format, params.quantize
            )
    single, batched = timed(sessions, check.inputs, params.measure, check.outputs)
    measured = []
    for made, path in files.items():
        if made == "coreml":
            note = check_coreml(path, check.preprocessing, exportable(model)[1])
            runtime, origin = "Core ML (Apple devices: not run here)", "the torch model, fp16"
            measured.append(TargetMeasurement(target=made, runtime=runtime, source=origin, note=note, **_file(path)))
            continue
        key = shipped.format if made == "onnx" else made
        measured.append(
            TargetMeasurement(
                target=made,
                runtime=runtime_name(sessions[key]),
                source=sources[made].format,
                **_file(path),
                **check.quality(answers[made]),
                latency_ms_b1=latency(single[key]).median,
                latency_ms_b32=latency(batched[key]).median,
                note=(LITERT_INT8_NOTE if litert_calibration is not None else LITERT_NOTE) if made == "litert" else "",
            )
        )
    return measured


def _converted(
    target: Target,
    sources: dict[Target, OnnxMeasurement],
    float_file: OnnxMeasurement,
    calibration: np.ndarray | None,
    model: nn.Module,
    pre: Preprocessing,
    out_dir: Path,
) -> Path:
    """`target`'s file, made from the ONNX file `sources` names for it (litert: from `float_file`, in int8 with
    `calibration`; coreml: from the torch `model`)."""
    if target == "onnx":
        return Path(sources[target].path)
    if target == "openvino":
        return to_openvino(Path(sources[target].path), out_dir / "model.openvino.xml")
    if target == "litert":
        return to_litert(Path(float_file.path), out_dir / "model.tflite", calibration)
    return to_coreml(model, pre, out_dir / "model.mlpackage")


def _file(path: Path) -> dict[str, Any]:
    """A target's path, SHA-256 and size, as TargetMeasurement's fields."""
    return {"path": str(path), "sha256": tree_sha256(path), "size_mb": tree_size(path) / 2**20}


def verified(check: Any, opened: Session, source: Any, target: str, fmt: Format, limits: QuantizeParams) -> Any:
    """A target's answers on the test split, if it computes the model of the file it was converted from (`source`:
    that file's answers; `fmt`: its format), else a ModelError. From an fp32 file, its answers must agree with the
    file's on at least quantize.min_parity_agreement of the split; from an int8 file, whose integer arithmetic
    each runtime rounds its own way, it may lose at most what int8 may lose (quantize.max_accuracy_drop, or
    max_map_drop) of the file's score."""
    answers = check.answers(opened)
    if fmt in (FP32, PRUNED):
        agreement = check.agreement(answers, source)
        if agreement < limits.min_parity_agreement:
            raise ModelError(
                f"the {target} file agrees with the file it was converted from on {agreement:.1%} of the test "
                f"split (quantize.min_parity_agreement: {limits.min_parity_agreement:.1%}): its runtime computes "
                f"another model; leave {target} out of export.targets"
            )
        return answers
    metric, score = next(iter(check.quality(answers).items()))  # the first is the score int8 may lose
    before = check.quality(source)[metric]
    if before - score > limits.max_drop(metric):
        raise ModelError(
            f"the {target} file scores {metric} {score:.4f} on the test split, {before - score:.4f} below the int8 "
            f"file it was converted from (at most {limits.max_drop(metric):g}): its runtime's int8 computes another "
            f"model; leave {target} out of export.targets, or ship fp32 (quantize.enabled: false)"
        )
    return answers


def runtime_name(opened: Session) -> str:
    """What runs a session, with its version (and OpenVINO's precision)."""
    if isinstance(opened, OpenVinoSession):
        return opened.description
    if isinstance(opened, LiteRtSession):
        return f"LiteRT {metadata.version('ai-edge-litert')}"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def to_openvino(onnx_path: Path, xml_path: Path) -> Path:
    """OpenVINO IR of an ONNX file of cvops (weights at their precision: an int8 file's QDQ pairs stay int8),
    its preprocessing kept in the IR's runtime info."""
    ov = openvino()
    try:
        converted = read_model(ov.Core(), onnx_path)
    except RuntimeError as err:
        raise ModelError(f"OpenVINO cannot read {onnx_path}: {str(err).strip().splitlines()[0][:200]}") from err
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, str(xml_path), compress_to_fp16=False)
    return xml_path


def to_litert(onnx_path: Path, tflite_path: Path, calibration: np.ndarray | None = None) -> Path:
    """A LiteRT (TFLite) file of an fp32 ONNX file of cvops by onnx2tf (CVOPS_ONNX2TF, else onnx2tf on PATH: `make
    litert` installs it in an environment of its own), the input kept NCHW as the ONNX file's; written whole or
    not at all. In fp32; with `calibration` (model inputs, normalised), in int8 with float input and output,
    its activations calibrated on those images (onnx2tf reads no int8 ONNX file)."""
    import onnx

    converter = required_onnx2tf()
    proto = onnx.load(str(onnx_path))
    explicit_pools(proto)  # onnx2tf misreads ceil-mode pools as OpenVINO refuses them (logits 3.5 apart)
    with tempfile.TemporaryDirectory(prefix="cvops-litert-") as scratch:
        source = Path(scratch) / "model.onnx"
        onnx.save(proto, str(source))
        command = [converter, "-i", str(source), "-o", str(Path(scratch) / "out"), "-kat", INPUT, "-n"]
        written = Path(scratch) / "out" / "model_float32.tflite"
        if calibration is not None:  # already normalised: onnx2tf's own (x - mean) / std is the identity
            np.save(Path(scratch) / "calibration.npy", calibration.astype(np.float32))
            command += ["-oiqt", "-cind", INPUT, str(Path(scratch) / "calibration.npy"), "[[[[0.0]]]]", "[[[[1.0]]]]"]
            written = written.with_name("model_integer_quant.tflite")
        done = subprocess.run(command, capture_output=True, text=True, cwd=scratch, check=False)
        if done.returncode != 0 or not written.is_file():
            said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1][:300]
            raise ModelError(f"onnx2tf could not convert {onnx_path} (exit {done.returncode}): {said}")
        if calibration is not None:
            _name_outputs(written, [output.name for output in proto.graph.output])
        tflite_path.parent.mkdir(parents=True, exist_ok=True)
        partial = tflite_path.with_suffix(".partial")
        shutil.copyfile(written, partial)
        partial.rename(tflite_path)
    return tflite_path


def _name_outputs(path: Path, names: list[str]) -> None:
    """Give a LiteRT file's outputs the ONNX file's names: onnx2tf's int8 file calls them output_0, output_1, ...
    in the ONNX file's order (its fp32 file keeps the names)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    for signature in model.signatureDefs or []:
        for tensor in signature.outputs or []:
            key = tensor.name.decode()
            if key.startswith("output_") and key.removeprefix("output_").isdigit():
                tensor.name = names[int(key.removeprefix("output_"))].encode()
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())


def required_onnx2tf() -> str:
    """The litert target's converter (`onnx2tf`), or a one-line error saying how to install it."""
    converter = onnx2tf()
    if converter is None:
        raise ConfigError(
            f"the litert target needs onnx2tf, in an environment of its own (its TensorFlow pins clash with "
            f"cvops's): {ONNX2TF_SETUP}"
        )
    return converter


def coremltools() -> Any:
    """coremltools, quietly (it warns about every optional part of itself it misses on Linux), or a one-line
    error saying how to install it."""
    try:
        with warnings.catch_warnings(), quiet("coremltools", level=logging.ERROR):
            warnings.simplefilter("ignore")
            import coremltools as ct
    except ImportError as err:
        raise ConfigError(f"the coreml target needs coremltools: {COREML_EXTRA}") from err
    return ct


def to_coreml(model: nn.Module, preprocessing: Preprocessing, path: Path) -> Path:
    """An ML Program of the torch model (traced), inputs `image` (batch 1 to COREML_MAX_BATCH) and the ONNX
    file's outputs, the preprocessing in its metadata; written whole or not at all."""
    ct = coremltools()
    module, outputs = exportable(model)
    size = preprocessing.image_size
    with torch.no_grad(), warnings.catch_warnings(), quiet("coremltools", level=logging.ERROR):
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, torch.rand(1, 3, size, size))
        converted = ct.convert(
            traced,
            inputs=[ct.TensorType(name=INPUT, shape=(ct.RangeDim(1, COREML_MAX_BATCH), 3, size, size))],
            outputs=[ct.TensorType(name=name) for name in outputs],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            skip_model_load=True,  # Core ML itself is on Apple devices only
        )
    converted.user_defined_metadata[METADATA_KEY] = preprocessing.model_dump_json()
    converted.short_description = f"cvops {preprocessing.task} model: {', '.join(preprocessing.class_names)}"
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")  # coremltools wants the .mlpackage suffix
    shutil.rmtree(partial, ignore_errors=True)
    converted.save(str(partial))
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    return path


def check_coreml(path: Path, preprocessing: Preprocessing, outputs: list[str]) -> str:
    """The spec of a Core ML file: its input, outputs, batch range and metadata are what the ONNX file has; a
    line saying what was checked, or a ModelError naming what differs."""
    ct = coremltools()
    spec = ct.utils.load_spec(str(path))
    description = spec.description
    inputs = [(i.name, list(i.type.multiArrayType.shapeRange.sizeRanges)) for i in description.input]
    found = [o.name for o in description.output]
    metadata = dict(description.metadata.userDefined)
    size = preprocessing.image_size
    problems = []
    if [name for name, _ in inputs] != [INPUT]:
        problems.append(f"inputs {[name for name, _ in inputs]}, not ['{INPUT}']")
    else:
        ranges = [(r.lowerBound, r.upperBound) for r in inputs[0][1]]
        if ranges != [(1, COREML_MAX_BATCH), (3, 3), (size, size), (size, size)]:
            problems.append(f"input shape ranges {ranges}, not batch 1-{COREML_MAX_BATCH} x 3 x {size} x {size}")
    if found != outputs:
        problems.append(f"outputs {found}, not {outputs}")
    if metadata.get(METADATA_KEY) != preprocessing.model_dump_json():
        problems.append("its preprocessing metadata is not the ONNX file's")
    if problems:
        raise ModelError(f"the Core ML file {path} is wrong: {'; '.join(problems)}")
    return (
        f"ML Program (spec {spec.specificationVersion}); input {INPUT} batch 1-{COREML_MAX_BATCH} x 3 x {size} x "
        f"{size}, outputs {', '.join(found)}, preprocessing in its metadata: checked. Core ML runs on Apple "
        "devices only, so it was not run here"
    )


def tree_size(path: Path) -> int:
    """Bytes of a file and its companions (an IR's .bin), or of every file under a folder (.mlpackage)."""
    return sum(p.stat().st_size for p in _files(path))


def tree_sha256(path: Path) -> str:
    """SHA-256 over a target's files (names and contents, in order)."""
    digest = hashlib.sha256()
    for part in _files(path):
        digest.update(part.name.encode())
        digest.update(part.read_bytes())
    return digest.hexdigest()


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    companion = path.with_suffix(".bin")
    return [path, companion] if path.suffix == ".xml" and companion.is_file() else [path]
