"""Loading a served model: the predictor of an ONNX file of cvops, of the task the file says (its serve part,
cvops/tasks/<task>/serve.py, makes it)."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cvops.export.onnx_model import Runtime, preprocessing_of, session
from cvops.tasks import task

if TYPE_CHECKING:
    from cvops.registry.artifacts import ServedModel
    from cvops.serving.predictor import Predictor
    from cvops.tasks.detection.postprocess import PostProcess


@dataclass(frozen=True)
class ModelFiles:
    """A model version's ONNX file (and monitoring projection) on this machine, with the identity its answers
    name."""

    onnx_path: Path
    model_name: str
    version: str
    lineage_id: str
    projection_path: Path | None = None


def load(
    model: ModelFiles,
    max_batch: int,
    post: "PostProcess",
    threads: int | None = None,
    top_k: int = 1,
    runtime: Runtime = "onnxruntime",
) -> "Predictor":
    """The predictor of an ONNX file of cvops, of the task the file says (`post`, a detector's post-processing,
    is detect.served; `top_k`, a classifier's answer length, is serve.top_k; `runtime`, what runs the file, is
    serve.runtime)."""
    opened = session(model.onnx_path, threads, runtime)
    preprocessing = preprocessing_of(opened, model.onnx_path)
    return task(preprocessing.task).serve.predictor(model, opened, max_batch, threads, post, top_k)


def load_served(
    served: "ServedModel",
    max_batch: int,
    post: "PostProcess",
    threads: int | None = None,
    top_k: int = 1,
    runtime: Runtime = "onnxruntime",
) -> "Predictor":
    """`load` for a registry version (`artifacts.resolve`)."""
    projection = Path(served.projection_path) if served.projection_path else None
    model = ModelFiles(Path(served.onnx_path), served.model_name, served.version, served.lineage_id, projection)
    return load(model, max_batch, post, threads, top_k, runtime)
