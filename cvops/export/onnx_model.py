"""An ONNX model file of cvops: its preprocessing metadata, a session of a runtime (onnxruntime, or OpenVINO:
runtimes.py), predictions.

Torch-free: this is all a serving process needs to load and run a shipped model.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel

from cvops.config import MeasureParams
from cvops.data.preprocess import LEGACY_DECODER, LEGACY_RESIZE, Decoder, Fit, Resize
from cvops.errors import ModelError
from cvops.timing import K, interleaved_calls

if TYPE_CHECKING:
    import onnx

    from cvops.data.prepare import DatasetRef

INPUT, OUTPUT = "image", "logits"
EMBEDDING = "embedding"  # the penultimate layer (pooled features), for drift monitoring
BOX_OUTPUTS = (OUTPUT, "box_offsets", "centerness", "anchors")  # a detector's (cvops.tasks.detection.postprocess)
METADATA_KEY = "cvops"
Runtime = Literal["onnxruntime", "openvino"]


class Session(Protocol):
    """What cvops calls on a loaded model: onnxruntime's InferenceSession, or a runtime made to look like it."""

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def get_outputs(self) -> Sequence[Any]: ...

    def get_modelmeta(self) -> Any: ...


class Preprocessing(BaseModel):
    """What turns an image into the model's input, and its output into labels."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    layout: str = "NCHW float32, RGB resized bilinear to image_size by `resize`, (x / 255 - mean) / std"
    task: str = "classification"
    level_sizes: list[int] = []  # a detector's points per pyramid level: how its outputs split by level
    resize: Resize = LEGACY_RESIZE  # prepare.resize of the training data (files exported before it: stretch)
    decoder: Decoder = LEGACY_DECODER  # prepare.decoder of the training data (files exported before it: full)

    @classmethod
    def of(cls, ref: "DatasetRef", mean: tuple[float, ...], std: tuple[float, ...], **extra: Any) -> "Preprocessing":
        """What a model trained on `ref`'s prepared data, normalised by (mean, std), takes and answers with."""
        return cls(
            image_size=ref.image_size,
            resize=ref.resize,
            decoder=ref.decoder,
            mean=mean,
            std=std,
            class_names=ref.class_names,
            task=ref.task,
            **extra,
        )

    def fit(self, width: int, height: int) -> Fit:
        """Where a `width` x `height` image lands in this model's input."""
        return Fit.of(width, height, self.image_size, self.resize)


def set_metadata(proto: "onnx.ModelProto", preprocessing: Preprocessing) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, preprocessing.model_dump_json()


def read_preprocessing(path: Path) -> Preprocessing:
    """The preprocessing an ONNX file of cvops carries; a clear error for a missing or foreign file."""
    return preprocessing_of(session(path), path)


def preprocessing_of(onnx_session: Session, path: Path) -> Preprocessing:
    """The preprocessing in the metadata of `path`, loaded as `onnx_session`."""
    found = onnx_session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in found:
        raise ModelError(f"{path} has no cvops preprocessing metadata: export it with cvops")
    return Preprocessing.model_validate_json(found[METADATA_KEY])


def session(path: Path, threads: int | None = None, runtime: Runtime = "onnxruntime") -> Session:
    """A CPU session of `runtime` (an OpenVINO IR file, `.xml`, is always OpenVINO's, a `.tflite` file LiteRT's); a
    clear error for a missing or corrupt file."""
    if not path.is_file():
        raise ModelError(f"model file {path} not found: re-run `cvops quantize V` to recreate it")
    if runtime == "openvino" or path.suffix == ".xml":
        from cvops.export.runtimes import OpenVinoSession

        return OpenVinoSession(path, threads)
    if path.suffix == ".tflite":
        from cvops.export.runtimes import LiteRtSession

        return LiteRtSession(path, threads)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: onnxruntime uses every physical core
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf types
        detail = str(err).splitlines()[0][:200]
        raise ModelError(f"{path} is not a loadable ONNX model ({detail}); re-export it") from err


def has_embedding(onnx_session: Session) -> bool:
    return EMBEDDING in {output.name for output in onnx_session.get_outputs()}


def output_names(onnx_session: Session) -> list[str]:
    """The outputs to ask for: logits, and embeddings when the file has them (files exported before have none)."""
    return [OUTPUT, EMBEDDING] if has_embedding(onnx_session) else [OUTPUT]


def predict_outputs(
    onnx_session: Session,
    inputs: np.ndarray,
    batch_size: int = 64,
    names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and, when the file has that output, embeddings; `names`: output_names, when known already."""
    names = names or output_names(onnx_session)
    chunks = [onnx_session.run(names, {INPUT: inputs[i : i + batch_size]}) for i in range(0, len(inputs), batch_size)]
    logits = np.concatenate([chunk[0] for chunk in chunks])
    return logits, (np.concatenate([chunk[1] for chunk in chunks]) if len(names) > 1 else None)


def predict_logits(onnx_session: Session, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate(
        [onnx_session.run([OUTPUT], {INPUT: inputs[i : i + batch_size]})[0] for i in range(0, len(inputs), batch_size)]
    )


def detect_outputs(
    onnx_session: Session, inputs: np.ndarray, batch_size: int = 32
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A detector's raw outputs (logits, box offsets, centerness; the anchors once) and its embeddings."""
    names = [*BOX_OUTPUTS, EMBEDDING]
    chunks = [onnx_session.run(names, {INPUT: inputs[i : i + batch_size]}) for i in range(0, len(inputs), batch_size)]
    logits, offsets, centerness, embedding = (np.concatenate([chunk[k] for chunk in chunks]) for k in (0, 1, 2, 4))
    return (logits, offsets, centerness, chunks[0][3]), embedding


def timed(
    sessions: dict[K, Session], inputs: np.ndarray, measure: MeasureParams, outputs: list[str]
) -> tuple[dict[K, list[float]], dict[K, list[float]]]:
    """Milliseconds of every session's calls computing `outputs` on one image and on 32 (repeated if the split
    is smaller), the sessions taking turns call by call (cvops/timing.py); at batch 1, then at batch 32."""
    b1, b32 = inputs[:1], np.resize(inputs, (32, *inputs.shape[1:]))

    def call(key: K, batch: np.ndarray) -> Any:
        return lambda: sessions[key].run(outputs, {INPUT: batch})

    single = interleaved_calls({key: call(key, b1) for key in sessions}, measure.runs)
    batched = interleaved_calls({key: call(key, b32) for key in sessions}, measure.batch_runs)
    return single, batched
