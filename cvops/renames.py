"""Names that saved things hold, and where each now lives.

MLflow pickles a trained model with the module of each of its classes: a detector registered by cvops 0.1 is a
`cvops.detection.Detector`. The scheduler's job store names the function a job runs (`cvops.scheduler:run_job`).
Loading either maps the names of modules that moved to their new homes here, so that what users saved keeps
loading; no module is kept under its old name.
"""

import io
import pickle
from typing import IO, Any

# cvops 0.1 module -> the module that holds its code now (the move into stage and task packages)
MOVED = {
    "cvops.aliases": "cvops.registry.aliases",
    "cvops.artifacts": "cvops.registry.artifacts",
    "cvops.box_matching": "cvops.tasks.detection.matching",
    "cvops.box_postprocess": "cvops.tasks.detection.postprocess",
    "cvops.capture": "cvops.serving.capture",
    "cvops.data.boxes": "cvops.tasks.detection.boxes",
    "cvops.data.scenes": "cvops.tasks.detection.scenes",
    "cvops.detection": "cvops.tasks.detection.model",
    "cvops.detection_evaluation": "cvops.tasks.detection.evaluation",
    "cvops.distillation": "cvops.training.distillation",
    "cvops.distributed": "cvops.stack.distributed",
    "cvops.evaluation": "cvops.evaluation.evaluator",
    "cvops.evidence": "cvops.registry.evidence",
    "cvops.features": "cvops.serving.features",
    "cvops.feedback": "cvops.serving.feedback",
    "cvops.gallery": "cvops.evaluation.gallery",
    "cvops.gate": "cvops.evaluation.gate",
    "cvops.gc": "cvops.stack.gc",
    "cvops.identity": "cvops.registry.identity",
    "cvops.inference_log": "cvops.serving.inference_log",
    "cvops.labels": "cvops.data.labels",
    "cvops.launch": "cvops.cli.launch",
    "cvops.lineage": "cvops.registry.lineage",
    "cvops.modelcard": "cvops.registry.modelcard",
    "cvops.models": "cvops.training.models",
    "cvops.onnx_model": "cvops.export.onnx_model",
    "cvops.projection": "cvops.serving.projection",
    "cvops.quantization": "cvops.export.quantization",
    "cvops.registry": "cvops.registry.model_registry",
    "cvops.reports": "cvops.evaluation.reports",
    "cvops.reproduce": "cvops.cli.reproduce",
    "cvops.review": "cvops.registry.review",
    "cvops.saliency": "cvops.evaluation.saliency",
    "cvops.scheduler": "cvops.cli.scheduler",
    "cvops.serving.detector": "cvops.tasks.detection.predictor",
    "cvops.stack": "cvops.stack.checkout",
    "cvops.state": "cvops.stack.state",
    "cvops.statistics": "cvops.evaluation.statistics",
    "cvops.team": "cvops.stack.team",
    "cvops.tracking": "cvops.registry.tracking",
    "cvops.traffic": "cvops.monitoring.traffic",
    "cvops.training": "cvops.training.trainer",
    "cvops.training_on_ray": "cvops.training.on_ray",
    "cvops.versions": "cvops.registry.versions",
    "cvops.web": "cvops.stack.web",
}


def current_module(module: str) -> str:
    """Where the code of `module`, as a saved object names it, lives now."""
    return MOVED.get(module, module)


def current_reference(reference: str) -> str:
    """A `module:qualname` reference (as APScheduler stores a job's function) with its module's current name."""
    module, _, name = reference.partition(":")
    return f"{current_module(module)}:{name}"


class Unpickler(pickle.Unpickler):
    """pickle's Unpickler, finding each class under its module's current name."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(current_module(module), name)


def load(file: IO[bytes], **kwargs: Any) -> Any:
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return Unpickler(io.BytesIO(data), **kwargs).load()
