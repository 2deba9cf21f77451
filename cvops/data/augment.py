"""Seeded albumentations augmentation for training, and the torch Dataset over prepared uint8 images with their
labels (a detector's images with their boxes: cvops.tasks.detection.train)."""

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from cvops.config import AugmentParams
from cvops.data.preprocess import model_inputs
from cvops.errors import ConfigError


def augmentation(params: AugmentParams | str, seed: int, boxes: bool = False) -> A.Compose:
    """Seeded augmentation of uint8 images (normalisation follows, in ImageDataset): train.augment's
    probabilities, or the user's pipeline saved as YAML or JSON (`saved_pipeline`); with `boxes`, the boxes
    move with the pixels (pascal_voc x1, y1, x2, y2), clipped to the image, and a box less than a third
    visible after the move is dropped."""
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3, clip=True)
    if isinstance(params, str):
        return A.Compose([saved_pipeline(params)], seed=seed, bbox_params=bbox_params if boxes else None)
    augment = [
        A.HorizontalFlip(p=params.hflip),
        A.VerticalFlip(p=params.vflip),
        A.RandomRotate90(p=params.rotate90),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=params.brightness_contrast),
        A.Affine(translate_percent=(-0.05, 0.05), scale=(0.9, 1.1), rotate=(-10, 10), p=params.shift_scale_rotate),
    ]
    return A.Compose([t for t in augment if t.p > 0], seed=seed, bbox_params=bbox_params if boxes else None)


def saved_pipeline(path: str, size: int = 64) -> A.BasicTransform | A.BaseCompose:
    """The albumentations pipeline saved at `path` (A.save; relative to the project's root), checked: it loads,
    and keeps an RGB uint8 image's size and type (prepared images are batched at one size). A ConfigError naming
    train.augment otherwise."""
    from cvops.config import Project

    file = Project.find().root / path
    if not file.is_file():
        raise ConfigError(f"train.augment: {path} not found (a pipeline saved with A.save, relative to {file.parent})")
    try:
        pipeline = A.load(str(file), data_format="json" if file.suffix == ".json" else "yaml")
        image = np.full((size, size, 3), 128, dtype=np.uint8)
        out = A.Compose([pipeline], seed=0)(image=image)["image"]
    except Exception as err:  # albumentations raises many types for a bad file or transform
        raise ConfigError(
            f"train.augment: {path} is not a usable albumentations pipeline: {err}".splitlines()[0]
        ) from err
    if out.shape != image.shape or out.dtype != np.uint8:
        raise ConfigError(
            f"train.augment: {path} turns a {size}x{size} RGB uint8 image into {'x'.join(map(str, out.shape))} "
            f"{out.dtype}: training images keep their prepared size and type (drop the resize or crop; "
            "normalisation is cvops's)"
        )
    return pipeline


class ImageDataset(Dataset):
    """Prepared images (N,H,W,3 uint8) with integer labels: augmented (when given an augmentation), then
    normalised exactly as serving normalises them (`model_inputs`)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        augment: A.Compose | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.mean, self.std = mean, std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        return torch.from_numpy(model_inputs(image[None], self.mean, self.std)[0]), int(self.labels[index])
