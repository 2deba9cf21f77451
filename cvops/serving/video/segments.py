"""A classifier over a video: each frame's probabilities averaged over the last `video.smoothing_seconds`
(one frame misread does not flip the label), and the frames with one smoothed label in a row joined into a
segment (label, start, end)."""

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Smoother:
    """The mean of the probabilities of the frames of the last `seconds` (the newest frame always counts)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.window: deque[tuple[float, np.ndarray]] = deque()

    def update(self, time: float, probabilities: np.ndarray) -> np.ndarray:
        self.window.append((time, probabilities))
        while self.window[0][0] < time - self.seconds:
            self.window.popleft()
        return np.mean([p for _, p in self.window], axis=0)


@dataclass
class Segments:
    """Runs of one smoothed label, as the frames go by."""

    COLUMNS = ("label", "start", "end", "first_frame", "last_frame", "frames", "mean_score")
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, frame: int, time: float, label: str, score: float) -> None:
        last = self.rows[-1] if self.rows else None
        if last is None or last["label"] != label:
            last = {"label": label, "start": round(time, 3), "first_frame": frame, "frames": 0, "score_sum": 0.0}
            self.rows.append(last)
        last.update(end=round(time, 3), last_frame=frame, frames=last["frames"] + 1)
        last["score_sum"] += score

    def table(self) -> list[dict[str, Any]]:
        return [
            {key: value for key, value in row.items() if key != "score_sum"}
            | {"mean_score": round(row["score_sum"] / row["frames"], 4)}
            for row in self.rows
        ]
