"""A served classifier: the predictor of its ONNX file (cvops/serving/predictor.py), top-k labels an answer.
Torch-free, as all of serving."""

from typing import TYPE_CHECKING

from cvops.serving.predictor import Predictor

if TYPE_CHECKING:
    from cvops.export.onnx_model import Session
    from cvops.serving.loading import ModelFiles
    from cvops.tasks.detection.postprocess import PostProcess


def predictor(
    model: "ModelFiles",
    opened: "Session",
    max_batch: int,
    threads: int | None,
    post: "PostProcess",
    top_k: int,
) -> Predictor:
    """The classifier of `model`'s ONNX file, open already (`opened`), answering its `top_k` labels (`post`, a
    detector's post-processing, is not a classifier's)."""
    return Predictor(
        model.onnx_path,
        model.model_name,
        model.version,
        model.lineage_id,
        max_batch,
        threads,
        model.projection_path,
        top_k=top_k,
        opened=opened,
    )
