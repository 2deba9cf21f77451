"""Albumentations pipelines and the torch Dataset over prepared uint8 images."""

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset

from cvops.config import AugmentParams
from cvops.data.preprocess import normalize


def to_model_tensor(mean: Sequence[float], std: Sequence[float]) -> list[A.BasicTransform]:
    return [normalize(mean, std), ToTensorV2()]


def train_transform(params: AugmentParams, mean: Sequence[float], std: Sequence[float], seed: int) -> A.Compose:
    """Seeded augmentation for training, ending with the model's normalisation."""
    augment = [
        A.HorizontalFlip(p=params.hflip),
        A.VerticalFlip(p=params.vflip),
        A.RandomRotate90(p=params.rotate90),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=params.brightness_contrast),
        A.Affine(translate_percent=(-0.05, 0.05), scale=(0.9, 1.1), rotate=(-10, 10), p=params.shift_scale_rotate),
    ]
    return A.Compose([t for t in augment if t.p > 0] + to_model_tensor(mean, std), seed=seed)


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    return A.Compose(to_model_tensor(mean, std))


class ImageDataset(Dataset):
    """Prepared images (N,H,W,3 uint8) with integer labels, transformed on access."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: A.Compose):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=self.images[index])["image"], int(self.labels[index])

