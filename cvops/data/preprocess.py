"""The one preprocessing path from a decoded image to model input, shared by training, evaluation,
export and serving. Torch-free, so a serving process needs only numpy, PIL and albumentations."""

from collections.abc import Sequence

import albumentations as A
import numpy as np
from PIL import Image


def resize_image(image: Image.Image, size: int) -> np.ndarray:
    """The one resize used by training, evaluation and serving: RGB, bilinear, size x size, uint8 HWC."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def normalize(mean: Sequence[float], std: Sequence[float]) -> A.Normalize:
    return A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)


def model_inputs(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N,H,W,3) uint8 resized images to the float32 NCHW batch a model takes."""
    transform = normalize(mean, std)
    batch = np.stack([transform(image=image)["image"] for image in images])
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
