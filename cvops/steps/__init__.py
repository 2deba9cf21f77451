"""ZenML steps: thin wrappers, one per file, each calling into the cvops library."""

from cvops.steps.batch_predict import batch_predict
from cvops.steps.build_reference import build_reference
from cvops.steps.check_gate import check_gate
from cvops.steps.detect_drift import detect_drift
from cvops.steps.evaluate_model import evaluate_model
from cvops.steps.load_dataset import load_dataset
from cvops.steps.load_inference_window import load_inference_window
from cvops.steps.package_model import package_model
from cvops.steps.quantize_model import quantize_model
from cvops.steps.register_model import register_model
from cvops.steps.train_model import train_model
from cvops.steps.validate_data import validate_data

__all__ = [
    "batch_predict",
    "build_reference",
    "check_gate",
    "detect_drift",
    "evaluate_model",
    "load_dataset",
    "load_inference_window",
    "package_model",
    "quantize_model",
    "register_model",
    "train_model",
    "validate_data",
]
