from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from cvops.config import QuantizeParams
from cvops.data.prepare import DatasetRef
from cvops.data.preprocess import model_inputs
from cvops.errors import ModelError
from cvops.export.onnx_model import INPUT, OUTPUT, Preprocessing
from cvops.export.quantization import Quality
from cvops.tasks import task
from cvops.training.models import normalization
from tests.tasks.brightness.val import TOLERANCE


@dataclass
class BrightnessCheck:
    preprocessing: Preprocessing
    inputs: np.ndarray
    truth: np.ndarray
    torch_answers: np.ndarray
    outputs: ClassVar[list[str]] = [OUTPUT]

    def answers(self, onnx_session: Any) -> np.ndarray:
        return onnx_session.run([OUTPUT], {INPUT: self.inputs})[0][:, 0]

    def parity(self, fp32_answers: np.ndarray, params: QuantizeParams) -> float:
        difference = float(np.abs(fp32_answers - self.torch_answers).max())
        if difference > params.parity_tolerance:
            raise ModelError(f"ONNX export differs from the torch model by {difference:.2e}")
        return difference

    def quality(self, answers: np.ndarray) -> Quality:
        right = np.abs(answers - self.truth) <= TOLERANCE
        agree = np.abs(answers - self.torch_answers) <= TOLERANCE / 10
        return {"accuracy": float(right.mean()), "agreement": float(agree.mean())}

    def torch_quality(self) -> dict[str, float]:
        return {"torch_accuracy": self.quality(self.torch_answers)["accuracy"]}


def export_check(model: nn.Module, ref: DatasetRef) -> BrightnessCheck:
    images, truth, _ = task(ref.task).data.load_split(ref, "test")
    mean, std = normalization(model)
    inputs = model_inputs(images, mean, std)
    with torch.no_grad():
        answers = model.cpu().eval()(torch.from_numpy(inputs)).numpy()[:, 0]
    preprocessing = Preprocessing(image_size=ref.image_size, mean=mean, std=std, class_names=[], task=ref.task)
    return BrightnessCheck(preprocessing, inputs, truth, answers)
