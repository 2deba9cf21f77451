"""Runtimes beside onnxruntime, behind the part of onnxruntime's session interface cvops calls (`run`,
`get_outputs`, `get_modelmeta`), so evaluation, measurement and serving run any of them unchanged.

OpenVINO reads an ONNX file of cvops directly (its ONNX front end, at load) or the IR it was converted to
(targets.py); the preprocessing metadata travels in both, under the model's `framework` runtime info. LiteRT
runs a `.tflite` file of the litert target, one image a call. Torch-free, like onnx_model.py.
"""

import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvops.env import ONNX2TF_ENV
from cvops.errors import ConfigError, ModelError

OPENVINO_DEVICE = "CPU"
LITERT_EXTRA = "pip install 'cvops[litert]'"
COREML_EXTRA = "pip install 'cvops[coreml]'"
ONNX2TF_SETUP = f"`make litert` in cvops's clone, then set {ONNX2TF_ENV}=<clone>/.venv-litert/bin/onnx2tf"


def onnx2tf() -> str | None:
    """The litert target's converter: CVOPS_ONNX2TF, else onnx2tf on PATH; None when there is none."""
    found = os.environ.get(ONNX2TF_ENV) or shutil.which("onnx2tf")
    return found if found and Path(found).is_file() else None


def openvino() -> Any:
    """The openvino module, with its usage telemetry off: importing openvino imports its converter, which sends
    an event to Google Analytics unless the user opted out in ~/intel; without the telemetry package it uses its
    own stub, which sends nothing (cvops runs offline, and never writes in the user's home for this)."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino as ov

    return ov


def read_model(core: Any, path: Path) -> Any:
    """An OpenVINO IR file, or an ONNX file of cvops through OpenVINO's ONNX front end, its ceil-mode average
    pools made explicit first (`explicit_pools`)."""
    if path.suffix != ".onnx":
        return core.read_model(str(path))
    import onnx

    proto = onnx.load(str(path))
    if not explicit_pools(proto):
        return core.read_model(str(path))
    with tempfile.TemporaryDirectory(prefix="cvops-openvino-") as scratch:
        patched = Path(scratch) / path.name
        onnx.save(proto, str(patched))
        return core.read_model(str(patched))


def explicit_pools(proto: Any) -> int:
    """Rewrite each average pool in ceil mode whose window equals its stride and that leaves padding out of its
    averages (timm's `avg_down` shortcuts) as the same pool with the last window's padding explicit, and count
    them. Both give ceil(size / stride) outputs of the same averages; OpenVINO refuses the ceil-mode form when a
    window is larger than its input (a 1x1 feature map: the digits model at 16 px)."""
    from onnx import helper

    rewritten = 0
    for node in proto.graph.node:
        if node.op_type != "AveragePool":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        explicit = attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") and not any(attrs.get("pads", []))
        if attrs.get("ceil_mode") != 1 or attrs.get("count_include_pad", 0) != 0 or not explicit:
            continue
        if kernel != list(attrs.get("strides", [])):
            continue
        del node.attribute[:]
        node.attribute.extend(
            [
                helper.make_attribute("kernel_shape", kernel),
                helper.make_attribute("strides", kernel),
                helper.make_attribute("pads", [0] * len(kernel) + [k - 1 for k in kernel]),
                helper.make_attribute("ceil_mode", 0),
                helper.make_attribute("count_include_pad", 0),
            ]
        )
        rewritten += 1
    return rewritten


@dataclass(frozen=True)
class _Output:
    name: str


@dataclass(frozen=True)
class _Meta:
    custom_metadata_map: dict[str, str]


class OpenVinoSession:
    """A model compiled by OpenVINO for the CPU in f32, on `threads` threads (None: OpenVINO's choice), with a
    latency hint (one request at a time uses the cores, as onnxruntime's session does). Safe to call from several
    threads: each thread has its own infer request."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ov = openvino()
        core = ov.Core()
        # f32, the file's precision: OpenVINO's default on a CPU with bf16 instructions is bf16, which moved the
        # digits model's probabilities by 0.003 and lost 2% of the detector's boxes (tests/model/test_targets.py)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.model = read_model(core, path)
            self.compiled = core.compile_model(self.model, OPENVINO_DEVICE, config)
        except RuntimeError as err:
            detail = str(err).strip().splitlines()[0][:200]
            raise ModelError(f"OpenVINO cannot load {path} ({detail}); re-export it") from err
        self.outputs = {port.get_any_name(): port for port in self.compiled.outputs}
        self._local = threading.local()

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        found = request.infer(feeds)
        # copies: the request's output tensors are overwritten by its next call
        return [np.array(found[self.outputs[name]]) for name in (names or list(self.outputs))]

    @property
    def description(self) -> str:
        """OpenVINO's version and the precision it computes in."""
        version = openvino().get_version().split("-")[0]
        return f"OpenVINO {version} ({self.compiled.get_property('INFERENCE_PRECISION_HINT').to_string()})"

    def get_outputs(self) -> list[_Output]:
        return [_Output(name) for name in self.outputs]

    def get_modelmeta(self) -> _Meta:
        """The ONNX file's metadata, as OpenVINO keeps it (its `framework` runtime info)."""
        if not self.model.has_rt_info(["framework"]):
            return _Meta({})
        return _Meta({key: value.astype(str) for key, value in self.model.get_rt_info()["framework"].items()})


class LiteRtSession:
    """A LiteRT (TFLite) file of the litert target on `threads` threads. onnx2tf writes it with a batch of one, as
    phones run it: a batch is run one image a call, and the answers stacked. An interpreter serves one call at a
    time."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise ConfigError(f"running {path} needs LiteRT: {LITERT_EXTRA}") from err
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
            self.runner = interpreter.get_signature_runner("serving_default")
        except (RuntimeError, ValueError) as err:
            detail = str(err).strip().splitlines()[0][:200]
            raise ModelError(f"LiteRT cannot load {path} ({detail}); re-export it") from err
        self.names = list(interpreter.get_signature_list()["serving_default"]["outputs"])
        self._lock = threading.Lock()

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        wanted = names or self.names
        ((name, batch),) = feeds.items()
        with self._lock:
            rows = [self.runner(**{name: batch[i : i + 1]}) for i in range(len(batch))]
        return [np.concatenate([row[output] for row in rows]) for output in wanted]

    def get_outputs(self) -> list[_Output]:
        return [_Output(name) for name in self.names]

    def get_modelmeta(self) -> _Meta:
        return _Meta({})  # a .tflite file carries no preprocessing: the ONNX file it came from does
