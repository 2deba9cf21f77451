"""ZenML steps: thin wrappers, one per file, each calling into the cvops library."""

from steps.batch_predict import batch_predict
from steps.check_gate import check_gate
from steps.evaluate_model import evaluate_model
from steps.load_dataset import load_dataset
from steps.package_model import package_model
from steps.quantize_model import quantize_model
from steps.register_model import register_model
from steps.train_model import train_model
from steps.validate_data import validate_data

__all__ = [
    "batch_predict",
    "check_gate",
    "evaluate_model",
    "load_dataset",
    "package_model",
    "quantize_model",
    "register_model",
    "train_model",
    "validate_data",
]
