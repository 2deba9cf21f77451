"""Reading a video with PyAV (FFmpeg): what it holds, then its frames in order, each upright RGB with its time.

Every way a file can fail to be a video is one DataError line naming the file: not a media file, no video
stream (an audio-only file), no frame. A file that stops decoding part-way (truncated, or corrupt from some
point) yields the frames before the damage; `Frames.stopped` says where and why, for the job's summary. A phone's video
stored sideways with a rotation in its metadata is read upright, as players show it."""

import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import av
from PIL import Image

from cvops.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mjpeg", ".mjpg")


@dataclass(frozen=True)
class VideoInfo:
    path: str  # a file's path, or a live source's address
    width: int
    height: int
    fps: float  # the stream's average rate (frames may still come at varying times: their own times are used)
    declared_frames: int  # as the container says; 0 when it does not say
    codec: str


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based, in decoding order
    time: float  # seconds from the start of the stream, from the frame's own timestamp
    image: Image.Image  # RGB


@dataclass(frozen=True)
class Arrival:
    frame: Frame
    at: float  # time.monotonic() when it was read


def open_video(path: Path, name: str | None = None) -> tuple["av.container.InputContainer", VideoInfo]:
    """The opened container and what its first video stream says; DataError for anything that is not a video.
    `name`: what the messages and the info call it (an s3:// object read from a copy)."""
    shown = name or str(path)
    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise DataError(f"{shown}: no such file") from None
    except av.error.EOFError:
        raise DataError(f"{shown}: no frame in the file: give a video with frames") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise DataError(f"{shown}: not a video FFmpeg can read ({_reason(err)})") from None
    if not container.streams.video:
        kinds = ", ".join(sorted({str(stream.type) for stream in container.streams})) or "no streams"
        container.close()
        raise DataError(f"{shown}: no video stream (it holds {kinds}): give a video file")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads: decoding is the job's first cost
    rate = stream.average_rate or stream.guessed_rate or 0
    info = VideoInfo(shown, stream.width, stream.height, float(rate), stream.frames, stream.codec_context.name)
    return container, info


class Frames:
    """The frames of a video in decoding order, upright (a phone's rotation metadata applied); `stopped` is set
    when decoding ended before the stream did. The first frame is decoded on opening: it says the rotation,
    and a file without one is refused at once."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.container, info = open_video(path, name)
        self.stopped: str | None = None
        self.count = 0
        stream = self.container.streams.video[0]
        self.decoded = self.container.decode(stream)
        try:
            self.first: av.VideoFrame | None = next(self.decoded)
        except (StopIteration, av.error.FFmpegError) as err:
            self.container.close()
            why = f" ({_reason(err)})" if isinstance(err, av.error.FFmpegError) else ""
            raise DataError(f"{info.path}: no frame could be decoded{why}: give a video with frames") from None
        self.rotation = round(self.first.rotation or 0) % 360
        quarter = self.rotation in (90, 270)
        self.info = replace(info, width=info.height, height=info.width) if quarter else info
        # times from the stream's start (an encoder's delay starts an MP4's first frame after 0, as players hide)
        self.origin = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0

    def __iter__(self) -> Iterator[Frame]:
        period = 1.0 / self.info.fps if self.info.fps else 0.0
        try:
            for frame in itertools.chain([self.first] if self.first else [], self.decoded):
                self.first = None
                seconds = frame.time - self.origin if frame.time is not None else self.count * period
                yield Frame(self.count, max(float(seconds), 0.0), upright(frame.to_image(), self.rotation))
                self.count += 1
        except av.error.FFmpegError as err:
            self.stopped = f"decoding stopped after frame {self.count}: {_reason(err)}"
        # an MP4's edit list may leave out a frame or two of the samples it declares: more is a cut
        if self.info.declared_frames and self.count < self.info.declared_frames - 2 and self.stopped is None:
            self.stopped = f"the file ends after frame {self.count} of the {self.info.declared_frames} it declares"

    def batches(self, size: int, seconds_per_frame: Callable[[], float]) -> Iterator[list[Arrival]]:
        """Every frame, `size` at a time (a file read as fast as the job goes: nothing is dropped)."""
        batch: list[Arrival] = []
        for frame in self:
            batch.append(Arrival(frame, time.monotonic()))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def stop(self) -> None:
        """Nothing to stop: a file is read as the job asks for frames."""

    def close(self) -> None:
        self.container.close()


TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """A decoded frame as it is shown: turned by its display rotation (degrees counter-clockwise, as FFmpeg and
    PyAV read a phone's metadata); a rotation other than a quarter turn is left as stored."""
    return image.transpose(TURNS[rotation]) if rotation in TURNS else image


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err).splitlines()[0][:120]


def list_videos(location: str) -> list[tuple[str, str]]:
    """(name, where to read it) of a video file, or of the video files (by suffix, sorted) of a folder or an
    s3:// prefix, the name being its path under the folder or prefix; DataError when there is none."""
    from cvops.serving.batch import S3, input_location, list_inputs

    if location.startswith(S3):
        listed = list_inputs(input_location(location))
        found = [(name, path) for name, path in listed if Path(name).suffix.lower() in VIDEO_SUFFIXES]
    else:
        path = Path(location)
        if path.is_file():
            return [(path.name, str(path.resolve()))]
        if not path.is_dir():
            raise DataError(f"{location}: no such file or folder: give a video file or a folder of videos")
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        found = [(str(p.relative_to(path)), str(p.resolve())) for p in files]
    if not found:
        raise DataError(f"no video files in {location} (looked for {', '.join(VIDEO_SUFFIXES)})")
    return found


@contextmanager
def readable(path: str) -> Iterator[str]:
    """A file to read `path` from: an s3:// object's copy in a temporary folder (an MP4's index may be at its
    end: FFmpeg reads it with seeks), removed afterwards; anything else (a file, a live source) as it is."""
    if not path.startswith("s3://"):
        yield path
        return
    import fsspec

    with tempfile.TemporaryDirectory(prefix="cvops-video-") as scratch:
        local = Path(scratch) / Path(path).name
        try:
            fsspec.filesystem(path.split("://", 1)[0]).get(path, str(local))
        except OSError as err:
            raise DataError(f"{path}: could not be read ({_reason(err)})") from None
        yield str(local)
