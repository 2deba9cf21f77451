"""ZenML steps: thin wrappers, one per file, each calling into the cvops library."""

from steps.batch_predict import batch_predict
from steps.build_reference import build_reference
from steps.check_gate import check_gate
from steps.detect_drift import detect_drift
from steps.evaluate_model import evaluate_model
from steps.load_dataset import load_dataset
from steps.load_inference_window import load_inference_window
from steps.package_model import package_model
from steps.quantize_model import quantize_model
from steps.register_model import register_model
from steps.train_model import train_model
from steps.validate_data import validate_data

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
