"""The one path from a decoded image to model input, shared by import, validation, preparation, training,
evaluation, export, serving and batch inference. numpy and Pillow only: a serving process needs neither torch
nor albumentations.

Every image mode Pillow decodes becomes 8-bit RGB the same way, after the EXIF orientation is applied:
1, L, P, RGB, CMYK and YCbCr by Pillow's conversion; LA, PA and RGBA lose their alpha channel (as
torchvision's ImageFolder loader does); 16-bit integer images (I;16, and I up to 65535) are scaled from
0-65535 to 0-255; float images (F) are read as 0-1 (values outside are clipped). The mode a file has is
its own: `validate.allowed_modes` decides which are accepted.

How an image that is not square becomes the square model input is `prepare.resize` (`Fit`): stretched to the
square, letterboxed (scaled whole, centred, the rest grey), or cropped (scaled to cover, the centre kept).

How a JPEG is decoded is `prepare.decoder`: `full` decodes every pixel; `draft` lets libjpeg scale it down in the
DCT domain while decoding (1/2, 1/4 or 1/8: Pillow's `Image.draft`), to the smallest scale that still leaves at
least twice the model's input on each side, so that the last resize still smooths as it does from the full
image. A 12-megapixel photo then costs a fifth to a sixth of the time (bench/decoding.py), and the model sees
the same pixels within a mean difference of 2 levels of 255 (tests/unit/test_decoding.py). Other formats are
decoded in full either way. The setting is recorded with the prepared data and in the ONNX file, so a model is
served the way its data was prepared.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageOps

Decoder = Literal["full", "draft"]
DECODERS: tuple[str, ...] = get_args(Decoder)
LEGACY_DECODER: Decoder = "full"  # what cvops did before `prepare.decoder`: files written before it mean this
DRAFT_MARGIN = 2  # `draft` decodes to at least this many times the model's input on each side
Resize = Literal["stretch", "letterbox", "crop"]
RESIZE_RULES: tuple[str, ...] = get_args(Resize)
LEGACY_RESIZE: Resize = "stretch"  # what cvops did before `prepare.resize`: files written before it mean this
PAD = 114  # letterbox's border, a mid grey (Ultralytics' and YOLO's convention)

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


def reduce_while_decoding(image: Image.Image, size: int, decoder: Decoder) -> None:
    """With the `draft` decoder, a JPEG opened but not yet decoded is set to decode at the smallest DCT scale that
    leaves at least DRAFT_MARGIN x `size` pixels on each side (see the module's docstring); else nothing. Read
    the image's own size before: `image.size` is the reduced one after."""
    if decoder == "draft" and image.format == "JPEG":
        image.draft(image.mode, (DRAFT_MARGIN * size, DRAFT_MARGIN * size))
    elif decoder not in DECODERS:
        raise ValueError(f"no decoder {decoder!r}: one of {', '.join(DECODERS)}")


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


@dataclass(frozen=True)
class Fit:
    """Where a `width` x `height` image lands in the `size` x `size` input under a resize rule: a point (x, y)
    of the image is (x * scale_x + offset_x, y * scale_y + offset_y) of the input. Boxes go both ways with it:
    ground truth into the input for training, detections back into the image sent."""

    width: int
    height: int
    size: int
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    @classmethod
    def of(cls, width: int, height: int, size: int, rule: Resize = LEGACY_RESIZE) -> "Fit":
        if rule == "stretch":
            return cls(width, height, size, size / width, size / height)
        if rule == "letterbox":  # whole pixels, as the image is pasted: the box maths matches the pixels exactly
            inner_w, inner_h = _inner(width, height, size)
            offset_x, offset_y = (size - inner_w) // 2, (size - inner_h) // 2
            return cls(width, height, size, inner_w / width, inner_h / height, offset_x, offset_y)
        if rule == "crop":
            scale = size / min(width, height)
            return cls(width, height, size, scale, scale, (size - width * scale) / 2, (size - height * scale) / 2)
        raise ValueError(f"no resize rule {rule!r}: one of {', '.join(RESIZE_RULES)}")

    def _factors(self) -> tuple[np.ndarray, np.ndarray]:
        scale = np.array([self.scale_x, self.scale_y] * 2, dtype=np.float64)
        return scale, np.array([self.offset_x, self.offset_y] * 2, dtype=np.float64)

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 boxes in the image's pixels to the input's."""
        scale, offset = self._factors()
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale + offset

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in the input's pixels to the image's, clipped to it (a letterbox's border holds none)."""
        scale, offset = self._factors()
        found = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - offset) / scale
        return np.clip(found, 0, [self.width, self.height] * 2)


def _inner(width: int, height: int, size: int) -> tuple[int, int]:
    """A letterboxed image's size inside the square: its longer side fills it."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_image(image: Image.Image, size: int, rule: Resize = LEGACY_RESIZE) -> np.ndarray:
    """The one resize used by training, evaluation and serving: RGB, bilinear, size x size by `rule` (`Fit`),
    uint8 HWC."""
    image = _upright_8bit(image)
    if image.mode != "L":  # a grey image is resized as one band, then copied to three: a third of the work
        image = image.convert("RGB")
    width, height = image.size
    if rule == "letterbox" and width != height:
        inner = image.resize(_inner(width, height, size), Image.Resampling.BILINEAR)
        fit = Fit.of(width, height, size, rule)
        image = Image.new(image.mode, (size, size), PAD if image.mode == "L" else (PAD,) * 3)
        image.paste(inner, (int(fit.offset_x), int(fit.offset_y)))
    elif rule == "crop" and width != height:
        side = min(width, height)  # the centred square, resized in one pass (Pillow resamples from the box)
        left, top = (width - side) / 2, (height - side) / 2
        image = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    elif rule not in RESIZE_RULES:
        raise ValueError(f"no resize rule {rule!r}: one of {', '.join(RESIZE_RULES)}")
    else:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def model_inputs(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N,H,W,3) uint8 resized images to the float32 NCHW batch a model takes: (x / 255 - mean) / std."""
    batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)  # one copy: layout and type
    batch -= (np.asarray(mean, dtype=np.float32) * 255.0)[:, None, None]
    batch *= (1.0 / (np.asarray(std, dtype=np.float32) * 255.0))[:, None, None]
    return batch
