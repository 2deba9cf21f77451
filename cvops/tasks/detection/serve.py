"""A served detector: the predictor of its ONNX file (cvops/tasks/detection/predictor.py), boxes post-processed
as detect.served says. Torch-free, as all of serving."""

from typing import TYPE_CHECKING

from cvops.tasks.detection.postprocess import PostProcess
from cvops.tasks.detection.predictor import DetectionPredictor

if TYPE_CHECKING:
    from cvops.export.onnx_model import Session
    from cvops.serving.loading import ModelFiles


def predictor(
    model: "ModelFiles",
    opened: "Session",
    max_batch: int,
    threads: int | None,
    post: PostProcess,
    top_k: int,
) -> DetectionPredictor:
    """The detector of `model`'s ONNX file, open already (`opened`), its boxes post-processed by `post` (`top_k`,
    a classifier's answer length, is not a detector's)."""
    identity = (model.onnx_path, model.model_name, model.version, model.lineage_id, max_batch, threads)
    return DetectionPredictor(*identity, model.projection_path, opened=opened, post=post)
