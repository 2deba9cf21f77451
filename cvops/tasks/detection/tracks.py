"""digit-tracks: videos of real handwritten digits moving across a textured background, with the true box and
identity of every digit in every frame: a tracking set with exact ground truth, composed from the same MNIST
digits and backgrounds as digit-scenes (cvops/tasks/detection/scenes.py).

Each digit enters from outside the frame or starts inside it, moves on a straight line at its own speed and
leaves or stays; later digits pass over earlier ones, so paths that cross hide one digit behind another for a
while. The ground truth is MOTChallenge's `gt.txt` (frame from 1, id, left, top, width, height, 1, 1, visibility:
every digit an object to track, class 1 as MOT17's scored class, its visibility the share of its box that no
later digit covers), and each id's digit in `labels.csv` beside it."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cvops.tasks.detection.scenes import DIGITS, INK, _background, mnist_digits


@dataclass(frozen=True)
class Mover:
    """One digit's path: its glyph (alpha, side x side), label, and position (top-left) at frame 0 and speed."""

    identity: int
    label: str
    alpha: np.ndarray
    ink: np.ndarray
    start: tuple[float, float]
    velocity: tuple[float, float]  # pixels per frame

    def box(self, frame: int) -> tuple[float, float, float, float]:
        """The tight box of its ink at `frame` (may lie partly or wholly outside the canvas)."""
        rows, cols = np.nonzero(self.alpha > INK)
        left = self.start[0] + self.velocity[0] * frame
        top = self.start[1] + self.velocity[1] * frame
        return left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1


@dataclass(frozen=True)
class TrackingVideo:
    width: int
    height: int
    fps: float
    frames: int
    movers: tuple[Mover, ...]
    background: np.ndarray

    def frame(self, index: int) -> Image.Image:
        canvas = self.background.copy()
        for mover in self.movers:
            side = mover.alpha.shape[0]
            left = round(mover.start[0] + mover.velocity[0] * index)
            top = round(mover.start[1] + mover.velocity[1] * index)
            x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + side, self.width), min(top + side, self.height)
            if x1 >= x2 or y1 >= y2:
                continue
            alpha = mover.alpha[y1 - top : y2 - top, x1 - left : x2 - left, None]
            canvas[y1:y2, x1:x2] = canvas[y1:y2, x1:x2] * (1 - alpha) + mover.ink * alpha
        return Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8), mode="RGB")

    def images(self) -> Iterator[Image.Image]:
        for index in range(self.frames):
            yield self.frame(index)

    def ground_truth(self) -> list[tuple[int, int, float, float, float, float, int, int, float]]:
        """MOTChallenge gt.txt rows (frame from 1, id, left, top, width, height, 1, 1, visibility) of every digit
        whose box is inside the frame by at least half, clipped to it."""
        rows = []
        for index in range(self.frames):
            boxes = [mover.box(index) for mover in self.movers]
            for k, (mover, (x1, y1, x2, y2)) in enumerate(zip(self.movers, boxes, strict=True)):
                cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, self.width), min(y2, self.height)
                area = (x2 - x1) * (y2 - y1)
                if cx1 >= cx2 or cy1 >= cy2 or (cx2 - cx1) * (cy2 - cy1) < area / 2:
                    continue
                covered = max((_overlap((cx1, cy1, cx2, cy2), other) for other in boxes[k + 1 :]), default=0.0)
                visibility = round(1 - covered, 3)
                rows.append((index + 1, mover.identity, cx1, cy1, cx2 - cx1, cy2 - cy1, 1, 1, visibility))
        return rows


def _overlap(box: tuple[float, float, float, float], other: tuple[float, float, float, float]) -> float:
    """The share of `box`'s area that `other` covers."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return max(w, 0) * max(h, 0) / area if area else 0.0


def digit_tracks(
    seed: int,
    frames: int = 90,
    fps: float = 30.0,
    size: tuple[int, int] = (256, 192),
    objects: int = 3,
    scale: tuple[int, int] = (40, 64),
    speed: tuple[float, float] = (0.5, 2.0),
) -> TrackingVideo:
    """One video of `objects` digits moving for `frames` frames, composed reproducibly from `seed`."""
    digits, targets = mnist_digits()
    rng = np.random.default_rng(seed)
    width, height = size
    background, _ = _background(rng, height, width)
    movers: list[Mover] = []
    for identity in range(1, objects + 1):
        pick = int(rng.integers(len(digits)))
        side = int(rng.integers(scale[0], scale[1] + 1))
        glyph = Image.fromarray(digits[pick]).resize((side, side), Image.Resampling.BILINEAR)
        alpha = np.asarray(glyph, np.float32) / 255.0
        for _try in range(20):  # a start clear of the digits placed (their paths may still cross later)
            start = (float(rng.uniform(0, width - side)), float(rng.uniform(0, height - side)))
            box = (start[0], start[1], start[0] + side, start[1] + side)
            if all(
                _overlap(box, (m.start[0], m.start[1], m.start[0] + len(m.alpha), m.start[1] + len(m.alpha))) == 0
                for m in movers
            ):
                break
        angle, pace = rng.uniform(0, 2 * np.pi), rng.uniform(*speed)
        velocity = (float(np.cos(angle) * pace), float(np.sin(angle) * pace))
        behind = float(background[int(start[1]) : int(start[1]) + side, int(start[0]) : int(start[0]) + side].mean())
        ink = rng.uniform(0, 70, 3) if behind > 128 else rng.uniform(185, 255, 3)
        movers.append(Mover(identity, DIGITS[int(targets[pick])], alpha, ink, start, velocity))
    return TrackingVideo(width, height, fps, frames, tuple(movers), background)


def write_tracking_video(video: TrackingVideo, folder: Path, name: str = "video") -> Path:
    """`folder/<name>.mp4` and its ground truth `folder/<name>/gt/gt.txt` (MOTChallenge) with each id's digit in
    `labels.csv` beside it; the video's path."""
    from cvops.serving.video.output import VideoWriter

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.mp4"
    writer = VideoWriter(path, video.width, video.height, video.fps)
    try:
        for index, image in enumerate(video.images()):
            writer.write(image, index / video.fps)
    finally:
        writer.close()
    truth = folder / name / "gt" / "gt.txt"
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text(
        "".join(
            ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in row) + "\n" for row in video.ground_truth()
        )
    )
    labels = "".join(f"{mover.identity},{mover.label}\n" for mover in video.movers)
    (truth.parent / "labels.csv").write_text("id,label\n" + labels)
    return path
