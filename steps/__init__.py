"""ZenML steps: thin wrappers, one per file, each calling into the cvops library."""

from steps.evaluate_model import evaluate_model
from steps.load_dataset import load_dataset
from steps.register_model import register_model
from steps.train_model import train_model
from steps.validate_data import validate_data

__all__ = ["evaluate_model", "load_dataset", "register_model", "train_model", "validate_data"]
