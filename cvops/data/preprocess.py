"""The one path from a decoded image to model input, shared by import, validation, preparation, training,
evaluation, export, serving and batch inference. numpy and Pillow only: a serving process needs neither torch
nor albumentations.

Every image mode Pillow decodes becomes 8-bit RGB the same way, after the EXIF orientation is applied:
1, L, P, RGB, CMYK and YCbCr by Pillow's conversion; LA, PA and RGBA lose their alpha channel (as
torchvision's ImageFolder loader does); 16-bit integer images (I;16, and I up to 65535) are scaled from
0-65535 to 0-255; float images (F) are read as 0-1 (values outside are clipped). The mode a file has is
its own: `validate.allowed_modes` decides which are accepted.
"""

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

# EXIF orientations that turn the image by 90 degrees: its width and height swap when displayed
_QUARTER_TURNS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


def image_mode(image: Image.Image) -> str:
    """The mode as `validate.allowed_modes` names it (the byte orders of 16-bit images are one mode, I;16)."""
    return "I;16" if image.mode.startswith("I;16") else image.mode


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as displayed, after the EXIF orientation; read from the header, no decoding."""
    width, height = image.size
    if image.getexif().get(_ORIENTATION_TAG) in _QUARTER_TURNS:
        return height, width
    return width, height


def _upright_8bit(image: Image.Image) -> Image.Image:
    """The image upright (EXIF orientation), 16-bit and float greys as 8-bit L; other modes as they are."""
    if image.getexif().get(_ORIENTATION_TAG, 1) != 1:  # 1 is upright: most images, and no copy for them
        image = ImageOps.exif_transpose(image) or image
    if image.mode.startswith("I"):  # I;16, I;16B, I;16L, I
        pixels = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0
        image = Image.fromarray(np.round(pixels).astype(np.uint8), mode="L")
    elif image.mode == "F":
        pixels = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0
        image = Image.fromarray(np.round(pixels).astype(np.uint8), mode="L")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """The image upright (EXIF orientation) as 8-bit RGB, whatever its mode (see the module's docstring)."""
    return _upright_8bit(image).convert("RGB")


def resize_image(image: Image.Image, size: int) -> np.ndarray:
    """The one resize used by training, evaluation and serving: RGB, bilinear, size x size, uint8 HWC."""
    image = _upright_8bit(image)
    if image.mode == "L":  # resized as one band, then copied to three: the same pixels for a third of the work
        return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR).convert("RGB"), dtype=np.uint8)
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def model_inputs(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N,H,W,3) uint8 resized images to the float32 NCHW batch a model takes: (x / 255 - mean) / std."""
    batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)  # one copy: layout and type
    batch -= (np.asarray(mean, dtype=np.float32) * 255.0)[:, None, None]
    batch *= (1.0 / (np.asarray(std, dtype=np.float32) * 255.0))[:, None, None]
    return batch
