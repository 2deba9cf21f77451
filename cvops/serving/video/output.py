"""What a video job writes for each video, in a folder of its own:

- `annotated.mp4`: the video with its boxes, labels and track ids (a classifier's: the smoothed label) drawn;
  H.264 in fragmented MP4 with a fragment a second, so the file plays up to the last frame written when the job
  was stopped, and up to the last whole second when it was killed;
- `frames.jsonl`: a line per frame (frame, time, a detector's boxes with track ids, a classifier's label), each
  line flushed as written;
- `tracks.csv` (a detector: track, label, first and last time and frame, frames seen, mean score) or
  `segments.csv` (a classifier: label, start, end, frames, mean score);
- `zones.csv` with `video.zones` (a detector): each zone's crossings in and out, by class and in all;
- `summary.json`, last: the counts, the model version, and `complete` (false, with `stopped` saying why, when
  the job or the file ended early: what is there is valid, and there is no more)."""

import csv
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import av
import numpy as np
from PIL import Image, ImageDraw

from cvops.tasks.detection.predictor import Captioned, draw_boxes

if TYPE_CHECKING:
    from cvops.config import ZoneParams

ANNOTATED, FRAMES, SUMMARY = "annotated.mp4", "frames.jsonl", "summary.json"
TRACKS, SEGMENTS, ZONES = "tracks.csv", "segments.csv", "zones.csv"
OUTPUTS = (ANNOTATED, FRAMES, TRACKS, SEGMENTS, ZONES, SUMMARY)  # every file a video's folder may hold
ZONE_COLUMNS = ("zone", "kind", "label", "in", "out")
# fragments written as they are made: the file plays however the writing ends
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
MILLISECONDS = Fraction(1, 1000)
UNTRACKED = (160, 160, 160)
ZONE = (250, 200, 0)


def clear(folder: Path) -> None:
    """A video's folder made ready for a new run's outputs: an earlier run's are not this one's."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (folder / name).unlink(missing_ok=True)


def track_colour(track: int | None) -> tuple[int, int, int]:
    """A colour of its own for each track id (golden-angle hues), grey for a box with no track yet."""
    if track is None:
        return UNTRACKED
    hue = (track * 0.618034) % 1.0
    red, green, blue = Image.new("HSV", (1, 1), (round(hue * 255), 200, 220)).convert("RGB").getpixel((0, 0))  # type: ignore[misc]
    return red, green, blue


def annotate(picture: Image.Image, detections: list[dict[str, Any]]) -> Image.Image:
    """A frame with its tracked boxes: `#id label score` in the track's colour, the untracked ones under them."""
    boxes: list[Captioned] = [
        (
            d["box"],
            f"{'#' + str(d['track']) + ' ' if d['track'] is not None else ''}{d['label']} {d['score']:.2f}",
            track_colour(d["track"]),
        )
        for d in sorted(detections, key=lambda d: d["track"] is not None)
    ]
    return draw_boxes(picture, boxes)


def draw_zones(picture: Image.Image, zones: "list[ZoneParams]", totals: dict[str, dict[str, int]]) -> Image.Image:
    """A frame with each counting zone drawn, captioned with its name and counts so far."""
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(picture.size) / 250))
    boxes: list[Captioned] = []
    for zone in zones:
        points = [tuple(point) for point in (zone.line or zone.polygon or [])]
        if zone.line is not None:
            draw.line(points, fill=ZONE, width=width)
        else:
            draw.polygon(points, outline=ZONE, width=width)
        x, y = min(p[0] for p in points), min(p[1] for p in points)
        count = totals.get(zone.name, {"in": 0, "out": 0})
        boxes.append(([x, y, x, y], f"{zone.name} in {count['in']} out {count['out']}", ZONE))
    return draw_boxes(picture, boxes)


def caption(picture: Image.Image, label: str, score: float) -> Image.Image:
    """A frame with a classifier's smoothed label across its top."""
    width, _ = picture.size
    return draw_boxes(picture, [([0, 0, width - 1, 0], f"{label} {score:.2f}", (30, 30, 30))])


class VideoWriter:
    """An H.264 MP4 (fragmented: playable up to its last frame however the writing ends) at `fps`."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        self.container = av.open(str(path), "w", options=FRAGMENTED)
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps or 30).limit_denominator(1001))
        self.stream.width, self.stream.height = width + width % 2, height + height % 2  # 4:2:0 wants even sides
        self.stream.pix_fmt = "yuv420p"
        # ultrafast: twice veryfast's frames a second at 1280x720 for a file about 1.8 times larger; the job is
        # meant to keep up with a camera, and annotated.mp4 is for looking at
        self.stream.options = {"preset": "ultrafast", "crf": "23"}
        self.stream.codec_context.gop_size = max(1, round(fps or 30))  # a keyframe, so a fragment, every second
        self.stream.codec_context.time_base = MILLISECONDS  # each frame at its own time: gaps and a varying rate kept
        self.last = -1

    def write(self, picture: Image.Image, time: float) -> None:
        """`picture` shown from `time` seconds (after the frame before it)."""
        size = (self.stream.width, self.stream.height)
        if picture.size != size:  # an odd side (one pixel of padding), or a camera that changed its resolution
            fitted = Image.new("RGB", size)
            fitted.paste(picture if picture.width <= size[0] and picture.height <= size[1] else picture.resize(size))
            picture = fitted
        pixels = np.asarray(picture)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts, frame.time_base = max(round(time * 1000), self.last + 1), MILLISECONDS
        self.last = frame.pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():  # the frames the encoder still holds
            self.container.mux(packet)
        self.container.close()


class FrameLog:
    """frames.jsonl: a line per frame, flushed as written."""

    def __init__(self, path: Path) -> None:
        self.file: IO[str] = path.open("w")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def write_table(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """A CSV written whole to a temporary name, then renamed: never half a table."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(partial, path)
