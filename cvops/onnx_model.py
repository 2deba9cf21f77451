"""An ONNX model file of cvops: its preprocessing metadata, an onnxruntime session, predictions.

Torch-free: this is all a serving process needs to load and run a shipped model.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from cvops.errors import ModelError

if TYPE_CHECKING:
    import onnx
    import onnxruntime

INPUT, OUTPUT = "image", "logits"
METADATA_KEY = "cvops"


class Preprocessing(BaseModel):
    """What turns an image into the model's input, and its output into labels."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    layout: str = "NCHW float32, RGB resized bilinear to image_size, (x / 255 - mean) / std"


def set_metadata(proto: "onnx.ModelProto", preprocessing: Preprocessing) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, preprocessing.model_dump_json()


def read_preprocessing(path: Path) -> Preprocessing:
    """The preprocessing an ONNX file of cvops carries; a clear error for a missing or foreign file."""
    import onnx

    if not path.is_file():
        raise ModelError(f"ONNX file {path} not found: re-run `cvops quantize --version V` to recreate it")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError and others for damaged files
        raise ModelError(f"{path} is not a readable ONNX model ({type(err).__name__}); re-export it") from err
    found = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in found:
        raise ModelError(f"{path} has no cvops preprocessing metadata: export it with cvops")
    return Preprocessing.model_validate_json(found[METADATA_KEY])


def session(path: Path, threads: int | None = None) -> "onnxruntime.InferenceSession":
    """An onnxruntime CPU session; a clear error for a missing or corrupt file."""
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"ONNX file {path} not found: re-run `cvops quantize --version V` to recreate it")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: onnxruntime uses every physical core
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf types
        detail = str(err).splitlines()[0][:200]
        raise ModelError(f"{path} is not a loadable ONNX model ({detail}); re-export it") from err


def predict_logits(
    onnx_session: "onnxruntime.InferenceSession", inputs: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    return np.concatenate(
        [onnx_session.run([OUTPUT], {INPUT: inputs[i : i + batch_size]})[0] for i in range(0, len(inputs), batch_size)]
    )
