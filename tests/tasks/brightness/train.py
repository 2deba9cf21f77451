from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cvops.config import Params, TrainParams
from cvops.data.prepare import DatasetRef
from cvops.data.preprocess import model_inputs


class Brightness(nn.Module):
    """A 1x1 convolution (the backbone) and a linear head on its average: mean brightness is within its reach."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, kernel_size=1)
        self.head = nn.Linear(4, 1)

    def get_classifier(self) -> nn.Module:  # the head, which fine-tuning trains first (training.models)
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


class BrightnessSet(Dataset):
    augment = None  # the trainer reseeds an augmentation when there is one

    def __init__(self, images: np.ndarray, targets: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> None:
        self.images, self.targets, self.mean, self.std = images, targets, mean, std

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = model_inputs(self.images[index : index + 1], self.mean, self.std)[0]
        return torch.from_numpy(pixels), torch.tensor([self.targets[index]])


def new_model(params: Params, ref: DatasetRef, weights: str) -> nn.Module:
    return Brightness()


def datasets(params: Params, splits: Any, mean: Sequence[float], std: Sequence[float]) -> tuple[Dataset, Dataset]:
    return BrightnessSet(*splits["train"], mean, std), BrightnessSet(*splits["val"], mean, std)


def squared_error(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int | None]:
    images, targets = batch[0].to(device), batch[1].to(device)
    return nn.functional.mse_loss(model(images), targets), None


def objective(params: TrainParams) -> Any:
    return squared_error
