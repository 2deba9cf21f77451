"""Synthetic distribution shifts for demo traffic and the drift benchmark.

`severity` is the size of the shift, 0 to 1: brightness scales pixel values by 1 + severity (0.3: 30%
brighter), blur is a Gaussian of sigma = severity x 5% of the image side, rotate turns by severity x 90
degrees, noise adds Gaussian noise of sigma = severity x 64 grey levels.
"""

from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageFilter

Shift = Literal["none", "brightness", "blur", "rotate", "noise"]
SHIFTS: tuple[str, ...] = get_args(Shift)


def apply_shift(image: Image.Image, shift: str, severity: float, rng: np.random.Generator) -> Image.Image:
    """The image with the shift applied (a new image; RGB)."""
    image = image.convert("RGB")
    if shift == "none" or severity == 0:
        return image
    if shift == "brightness":
        pixels = np.asarray(image, dtype=np.float32) * (1 + severity)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if shift == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=severity * 0.05 * min(image.size)))
    if shift == "rotate":
        return image.rotate(severity * 90, resample=Image.Resampling.BILINEAR)
    if shift == "noise":
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, severity * 64, (image.height, image.width, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    raise ValueError(f"unknown shift {shift!r}: one of {', '.join(SHIFTS)}")
