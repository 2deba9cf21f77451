"""Detection's train part: FCOS on a timm backbone, images augmented with their boxes, and FCOS's losses."""

from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cvops.config import Params, TrainParams
from cvops.data.augment import augmentation
from cvops.data.prepare import DatasetRef
from cvops.data.preprocess import model_inputs
from cvops.tasks.detection.data import BoxSet
from cvops.tasks.detection.model import create_detector
from cvops.training.trainer import Objective, Splits

Target = dict[str, torch.Tensor]  # a detection target: "boxes" (K, 4) float in input pixels, "labels" (K,) int64


class BoxDataset(Dataset):
    """Prepared images (N,H,W,3 uint8) with their boxes (a (K, 4) array of x1, y1, x2, y2 in the prepared image's
    pixels, and K labels, per image): augmented with their boxes, then normalised as serving does."""

    def __init__(
        self,
        images: np.ndarray,
        targets: list[BoxSet],
        mean: Sequence[float],
        std: Sequence[float],
        augment: A.Compose | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} box sets")
        self.images, self.targets = images, targets
        self.mean, self.std = mean, std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image, (boxes, labels) = self.images[index], self.targets[index]
        if self.augment is not None:
            moved = self.augment(image=image, bboxes=boxes.reshape(-1, 4), labels=labels)
            image, boxes, labels = moved["image"], moved["bboxes"], moved["labels"]
        target = {
            "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        }
        return torch.from_numpy(model_inputs(image[None], self.mean, self.std)[0]), target

    @staticmethod
    def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
        """A batch: the images stacked, the targets a list (each image has its own number of boxes)."""
        return torch.stack([image for image, _ in batch]), [target for _, target in batch]


def new_model(params: Params, ref: DatasetRef, weights: str) -> nn.Module:
    """FCOS on train.model's feature stages (from `weights`) for `ref`'s classes and image size, as detect.* say."""
    detect = params.detect
    return create_detector(
        params.train.model, ref.num_classes, ref.image_size, weights, detect.fpn_channels, detect.head_convs
    )


def datasets(
    params: Params, splits: Splits, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[BoxDataset, BoxDataset]:
    """The (images, box sets) of the train split, augmented with their boxes as train.augment says, and of the val
    split."""
    augment = augmentation(params.train.augment, params.base.seed, boxes=True)
    return BoxDataset(*splits["train"], mean, std, augment), BoxDataset(*splits["val"], mean, std)


def detection_objective(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int | None]:
    """FCOS's three losses, summed, on (images, targets) batches (BoxDataset)."""
    images = batch[0].to(device, non_blocking=True, memory_format=torch.channels_last)
    targets = [{k: v.to(device, non_blocking=True) for k, v in target.items()} for target in batch[1]]
    losses = model(images, targets)
    return sum(losses.values()), None


def objective(params: TrainParams) -> Objective:
    """No parameter of train.* changes FCOS's losses."""
    return detection_objective
