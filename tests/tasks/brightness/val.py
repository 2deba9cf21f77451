import numpy as np
import torch
from torch import nn

from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import Champion, EvaluationSetup
from cvops.evaluation.reports import Evaluation
from cvops.tasks import task
from cvops.training.models import normalization
from tests.tasks.brightness.train import BrightnessSet

TOLERANCE = 0.05  # an answer within this of the true brightness is right


def predict(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    mean, std = normalization(model)
    inputs = torch.stack([x for x, _ in BrightnessSet(images, np.zeros(len(images)), mean, std)])
    with torch.no_grad():
        return model.to(device).eval()(inputs.to(device)).cpu().numpy()[:, 0]


def evaluate(model: nn.Module, ref: DatasetRef, setup: EvaluationSetup, champion: Champion | None) -> Evaluation:
    images, truth, _ = task(ref.task).data.load_split(ref, "test")
    errors = np.abs(predict(model, images, setup.device) - truth)
    metrics = {"mae": float(errors.mean()), "within_tolerance": float(np.mean(errors <= TOLERANCE))}
    return Evaluation(metrics=metrics, class_names=[], confusion_matrix_png="", num_images=len(images), task=ref.task)
