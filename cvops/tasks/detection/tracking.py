"""A detector's tracking, scored (`evaluate.tracking`): videos with true tracks run through the detector and the
tracker as `cvops run video` runs them, and the tracks scored against the truth by `trackers.eval` (TrackEval's
matching): HOTA, IDF1, MOTA and the ID switches, overall and per true track.

The videos are digit-tracks (composed from `base.seed`: cvops/tasks/detection/tracks.py), or the user's own in
MOTChallenge's layout: a folder of sequences, each `<seq>/gt/gt.txt` (frame from 1, id, left, top, width,
height, then a 0 for a row to ignore and other columns) with its frames in `<seq>/img1/` (`seqinfo.ini`'s
`frameRate`, else 30) or a video `<seq>.<ext>` beside the folder. A row that cannot be read is one line naming
the file and line."""

import configparser
import csv
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvops.config import VideoParams
from cvops.data.sources import IMAGE_SUFFIXES
from cvops.errors import DataError

DIGIT_TRACKS = "digit-tracks"
STRIP_FRAMES = 4  # frames of the first video in the model card's strip
Detect = Callable[[list[Image.Image]], list[list[dict[str, Any]]]]  # frames -> each frame's detections


@dataclass(frozen=True)
class Sequence:
    name: str
    fps: float
    truth: Path  # its MOTChallenge gt.txt
    frames: Callable[[], Iterator[Image.Image]]  # its frames in order, read when asked
    files: tuple[Path, ...] = ()  # a user's sequence: every file it is read from (its version's content)


def sequences(source: str, count: int, seed: int, scratch: Path) -> list[Sequence]:
    """The tracking videos `evaluate.tracking` names: `count` digit-tracks videos (their truth written under
    `scratch`), or the MOTChallenge sequences of a folder."""
    if source == DIGIT_TRACKS:
        from cvops.tasks.detection.tracks import digit_tracks

        found = []
        for k in range(count):
            video = digit_tracks(seed + 7919 * (k + 1), frames=90, fps=30.0, objects=4, speed=(1.0, 3.0))
            truth = scratch / f"digits-{k}" / "gt" / "gt.txt"
            truth.parent.mkdir(parents=True, exist_ok=True)
            truth.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in video.ground_truth()))
            found.append(Sequence(f"digits-{k}", video.fps, truth, video.images))
        return found
    return mot_sequences(Path(source))


def mot_sequences(folder: Path) -> list[Sequence]:
    """The MOTChallenge sequences of `folder`, each checked: its truth readable, its frames there."""
    if not folder.is_dir():
        raise DataError(f"evaluate.tracking: {folder} is not a folder: give digit-tracks or a folder of sequences")
    found = []
    for truth in sorted(folder.glob("*/gt/gt.txt")):
        root = truth.parent.parent
        rows = read_truth(truth)
        images = sorted(p for p in (root / "img1").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        video = next((p for p in sorted(folder.glob(f"{root.name}.*")) if p.is_file()), None)
        if not images and video is None:
            raise DataError(f"{root}: no frames: put them in {root / 'img1'} or a video {root}.mp4 beside it")
        last = int(rows[:, 0].max())
        if images and last > len(images):
            raise DataError(f"{truth}: frame {last} is past the {len(images)} frames in {root / 'img1'}")
        fps = _frame_rate(root / "seqinfo.ini")
        frames = _image_frames(images) if images else _video_frames(video)
        read_from = images if images else [video] if video else []
        files = (truth, *[p for p in [root / "seqinfo.ini"] if p.is_file()], *read_from)
        found.append(Sequence(root.name, fps, truth, frames, files))
    if not found:
        raise DataError(f"evaluate.tracking: no sequence in {folder} (looked for <seq>/gt/gt.txt)")
    return found


def data_version(source: str, videos: list[Sequence], seed: int) -> str:
    """What names the tracking videos' version, as `data_version` names the images': digit-tracks' recipe (they
    are composed again from it), or the SHA-256 of a folder's sequences, every file's path and content (a
    changed truth or frame is a new version)."""
    if source == DIGIT_TRACKS:
        return f"{DIGIT_TRACKS}:{len(videos)}:seed={seed}"
    folder = Path(source).resolve()
    digest = hashlib.sha256()
    for path in sorted({file.resolve() for sequence in videos for file in sequence.files}):
        digest.update(f"{path.relative_to(folder)}\0".encode())
        with path.open("rb") as file:
            digest.update(hashlib.file_digest(file, "sha256").digest())
    return f"sha256:{digest.hexdigest()[:16]}"


def read_truth(path: Path) -> np.ndarray:
    """gt.txt's rows as numbers (frame, id, left, top, width, height, ...); DataError naming the first bad line."""
    rows = []
    with path.open(newline="") as file:
        for line, row in enumerate(csv.reader(file), start=1):
            if not row or not "".join(row).strip():
                continue
            try:
                values = [float(v) for v in row[:7]]
            except ValueError:
                raise DataError(f"{path}:{line}: not numbers: {','.join(row)[:80]}") from None
            if len(values) < 6 or values[0] < 1 or values[4] <= 0 or values[5] <= 0:
                raise DataError(f"{path}:{line}: want frame (from 1), id, left, top, width > 0, height > 0")
            rows.append(values)
    if not rows:
        raise DataError(f"{path}: no rows: a sequence's gt.txt lists its true boxes")
    return np.array(rows)


def _frame_rate(info: Path) -> float:
    if not info.is_file():
        return 30.0
    parser = configparser.ConfigParser()
    parser.read(info)
    return parser.getfloat("Sequence", "frameRate", fallback=30.0)


def _image_frames(images: list[Path]) -> Callable[[], Iterator[Image.Image]]:
    def frames() -> Iterator[Image.Image]:
        for path in images:
            with Image.open(path) as image:
                yield image.convert("RGB")

    return frames


def _video_frames(video: Path | None) -> Callable[[], Iterator[Image.Image]]:
    from cvops.serving.video.decode import Frames

    def frames() -> Iterator[Image.Image]:
        source = Frames(Path(str(video)))
        try:
            yield from (frame.image for frame in source)
        finally:
            source.close()

    return frames


def score_tracking(
    detect: Detect, videos: list[Sequence], class_names: list[str], video: VideoParams, overlap: float, out: Path
) -> tuple[dict[str, float], Path]:
    """Each video's frames through `detect` (32 at a time) and the tracker `video` sets (boxes of one object
    reduced by `overlap`, as the video job does), scored against the truth: the metrics, and the strip of
    annotated frames of the first video (a PNG in `out`). Every true row not marked 0 is scored, whatever its
    class (MOT17's scorer keeps class 1 only: the copies of the truth it reads say 1)."""
    from trackers.eval import evaluate_mot_sequences

    strip: list[Image.Image] = []
    frames_seen = true_tracks = 0
    for k, sequence in enumerate(videos):
        truth = read_truth(sequence.truth)
        true_tracks += len(set(truth[:, 1]))
        _write_mot(out / "truth" / sequence.name / "gt" / "gt.txt", [_truth_row(row) for row in truth])
        rows, seen = _tracked_rows(detect, sequence, class_names, video, overlap, strip if k == 0 else None)
        _write_mot(out / "tracks" / f"{sequence.name}.txt", rows)
        frames_seen += seen
    scored = evaluate_mot_sequences(out / "truth", out / "tracks", metrics=["CLEAR", "HOTA", "Identity"]).aggregate
    assert scored.CLEAR is not None and scored.HOTA is not None and scored.Identity is not None
    metrics = {
        "tracking_hota": float(scored.HOTA.HOTA),
        "tracking_idf1": float(scored.Identity.IDF1),
        "tracking_mota": float(scored.CLEAR.MOTA),
        "tracking_id_switches": float(scored.CLEAR.IDSW),
        "tracking_id_switches_per_track": float(scored.CLEAR.IDSW) / max(true_tracks, 1),
        "tracking_frames": float(frames_seen),
    }
    return metrics, _strip(strip, out / "tracking.png")


def _tracked_rows(
    detect: Detect,
    sequence: Sequence,
    class_names: list[str],
    video: VideoParams,
    overlap: float,
    strip: list[Image.Image] | None,
) -> tuple[list[str], int]:
    """One video tracked: its MOT result rows (ids from 1), and how many frames it had; every 20th frame of its
    first 80 (a shorter video: its last), annotated, goes to `strip`."""
    from cvops.serving.video.output import annotate
    from cvops.serving.video.tracking import Tracker, one_box_per_object

    tracker, rows, index = Tracker(video, sequence.fps, class_names, overlap), [], 0
    last: tuple[Image.Image, list[dict[str, Any]]] | None = None
    frames = sequence.frames()
    while batch := list(itertools.islice(frames, 32)):
        for image, found in zip(batch, detect(batch), strict=True):
            tracked = tracker.update(one_box_per_object(found, overlap), index / sequence.fps)
            for d in (d for d in tracked if d["track"] is not None):
                x1, y1, x2, y2 = d["box"]
                rows.append(f"{index + 1},{d['track'] + 1},{x1},{y1},{x2 - x1},{y2 - y1},{d['score']},-1,-1,-1")
            if strip is not None and index % 20 == 19 and len(strip) < STRIP_FRAMES:
                strip.append(annotate(image.copy(), tracked))
            last = (image, tracked)
            index += 1
    if strip == [] and last is not None:
        strip.append(annotate(last[0].copy(), last[1]))
    return rows, index


def _truth_row(row: np.ndarray) -> str:
    """A true row as the scorer reads it: considered unless marked 0, and of the scored class."""
    considered = 1 if len(row) < 7 or row[6] != 0 else 0
    return ",".join(f"{v:g}" for v in [*row[:6], considered, 1, 1])


def _write_mot(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{row}\n" for row in rows))


def _strip(frames: list[Image.Image], path: Path) -> Path:
    """Frames side by side, 8 pixels apart, on white."""
    width = sum(f.width for f in frames) + 8 * (len(frames) + 1)
    sheet = Image.new("RGB", (width, max(f.height for f in frames) + 16), "white")
    x = 8
    for frame in frames:
        sheet.paste(frame, (x, 8))
        x += frame.width + 8
    sheet.save(path)
    return path
