"""A classifier's export check: the torch model's logits on the test split, which its fp32 ONNX file must
reproduce, and each file's accuracy and top-1 agreement with it (cvops/export/quantization.py runs the rest)."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cvops.config import QuantizeParams
from cvops.data.prepare import DatasetRef, load_split
from cvops.data.preprocess import model_inputs
from cvops.errors import ModelError
from cvops.export.onnx_model import OUTPUT, Preprocessing, predict_logits
from cvops.export.quantization import Quality
from cvops.training.models import normalization


@dataclass(frozen=True)
class ClassifierCheck:
    """The test split (normalised), its labels, and the torch model's logits on it."""

    preprocessing: Preprocessing
    inputs: np.ndarray
    labels: np.ndarray
    torch_logits: np.ndarray
    outputs: list[str] = field(default_factory=lambda: [OUTPUT])  # a measured call computes the logits only

    def answers(self, onnx_session: Any) -> np.ndarray:
        """A file's logits on the test split."""
        return predict_logits(onnx_session, self.inputs)

    def parity(self, fp32_answers: np.ndarray, params: QuantizeParams) -> float:
        return check_parity(fp32_answers, self.torch_logits, params)

    def quality(self, answers: np.ndarray) -> Quality:
        """A file's test accuracy and its top-1 agreement with the torch model."""
        predicted = answers.argmax(axis=1)
        return {
            "accuracy": float(np.mean(predicted == self.labels)),
            "agreement": float(np.mean(predicted == self.torch_logits.argmax(axis=1))),
        }

    def agreement(self, answers: np.ndarray, reference: np.ndarray) -> float:
        """The share of test images on which two files' top-1 labels agree."""
        return float(np.mean(answers.argmax(axis=1) == reference.argmax(axis=1)))

    def torch_quality(self) -> dict[str, float]:
        return {"torch_accuracy": float(np.mean(self.torch_logits.argmax(axis=1) == self.labels))}


def export_check(model: nn.Module, ref: DatasetRef) -> ClassifierCheck:
    """The torch classifier's logits on the test split, and the preprocessing its ONNX file carries."""
    mean, std = normalization(model)
    preprocessing = Preprocessing.of(ref, mean, std)
    images, labels, _ = load_split(ref, "test")
    inputs = model_inputs(images, mean, std)
    with torch.no_grad():
        torch_logits = torch.cat(
            [model.cpu().eval()(torch.from_numpy(inputs[i : i + 64])) for i in range(0, len(inputs), 64)]
        ).numpy()
    return ClassifierCheck(preprocessing, inputs, labels, torch_logits)


def check_parity(onnx_logits: np.ndarray, torch_logits: np.ndarray, params: QuantizeParams) -> float:
    """The fp32 ONNX file must reproduce the torch model, or the export changed the model; returns the largest
    logit difference."""
    difference = float(np.abs(onnx_logits - torch_logits).max())
    agreement = float(np.mean(onnx_logits.argmax(axis=1) == torch_logits.argmax(axis=1)))
    if difference > params.parity_tolerance or agreement < params.min_parity_agreement:
        raise ModelError(
            f"ONNX export differs from the torch model: max |logit difference| {difference:.2e} "
            f"(tolerance {params.parity_tolerance:g}), top-1 agreement {agreement:.4f} "
            f"(min {params.min_parity_agreement}); the model has an op the exporter does not reproduce"
        )
    return difference
