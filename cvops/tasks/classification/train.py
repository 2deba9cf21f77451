"""Classification's train part: a timm classifier with a fresh head, augmented labelled images, and
cross-entropy."""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cvops.config import Params, TrainParams
from cvops.data.augment import ImageDataset, augmentation
from cvops.data.prepare import DatasetRef
from cvops.training.models import create_model
from cvops.training.trainer import Objective, Splits


def new_model(params: Params, ref: DatasetRef, weights: str) -> nn.Module:
    """train.model with a fresh head for `ref`'s classes, from `weights`."""
    return create_model(params.train.model, ref.num_classes, weights, ref.image_size)


def datasets(
    params: Params, splits: Splits, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[ImageDataset, ImageDataset]:
    """The (images, labels) of the train split, augmented as train.augment says, and of the val split."""
    augment = augmentation(params.train.augment, params.base.seed)
    return ImageDataset(*splits["train"], mean, std, augment), ImageDataset(*splits["val"], mean, std)


@dataclass
class Classification:
    """Cross-entropy on (images, labels) batches; a right answer is the top class."""

    label_smoothing: float = 0.0

    def __call__(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int | None]:
        images, labels = batch[0].to(device, non_blocking=True, memory_format=torch.channels_last), batch[1]
        labels = labels.to(device, non_blocking=True)
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return loss, int((logits.argmax(1) == labels).sum().item())


def objective(params: TrainParams) -> Objective:
    return Classification(params.label_smoothing)
