"""One video through one served model version, frame by frame: a detector's boxes tracked, a classifier's labels
smoothed; the outputs of `cvops.serving.video.output`, and a sampled share of the frames for the inference log
(drift monitoring sees video traffic). `cvops.serving.video.videos` runs a job's every video."""

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from cvops.config import VideoParams
from cvops.console import progress
from cvops.data.preprocess import resize_image
from cvops.errors import DataError
from cvops.serving.features import image_features
from cvops.serving.feedback import new_request_id
from cvops.serving.predictor import DecodedImage, Predictor
from cvops.serving.video.decode import Frame, Frames, VideoInfo, readable
from cvops.serving.video.live import LiveFrames, is_live, shown
from cvops.serving.video.output import (
    ANNOTATED,
    FRAMES,
    SEGMENTS,
    SUMMARY,
    TRACKS,
    ZONE_COLUMNS,
    ZONES,
    FrameLog,
    VideoWriter,
    annotate,
    caption,
    clear,
    draw_zones,
    write_summary,
    write_table,
)
from cvops.serving.video.segments import Segments, Smoother
from cvops.serving.video.tracking import Tracker, TrackTable
from cvops.serving.video.zones import Zones
from cvops.tasks.detection.postprocess import PostProcess
from cvops.tasks.detection.predictor import DetectionPredictor

log = logging.getLogger("cvops")


class VideoJob(BaseModel):
    """What one video job reads, with which model, and where its outputs go (a pipeline's input: pydantic)."""

    model_config = ConfigDict(frozen=True)

    selector: str  # the model: an alias or a version number
    location: str  # a video file, a folder of videos, or a live source (rtsp://, http(s)://, /dev/video0)
    output: Path  # a folder per video goes under it
    duration: float | None = None  # seconds to watch a live source (None: until it ends or the job is stopped)


Drawing = Callable[[], Image.Image]  # a frame's picture with what was found drawn on it, made when needed


class Stages:
    """Seconds the job spends in each stage (reading, resizing, the model, tracking, drawing, encoding, ...),
    summed over its frames: the summary's `seconds_by_stage`, which says where the time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class VideoRun:
    """One video's outputs (cvops.serving.video.output) as its frames are answered: a detector's boxes tracked, a
    classifier's labels smoothed; a sampled share of the frames kept as inference-log rows."""

    def __init__(
        self, predictor: Predictor, info: VideoInfo, folder: Path, params: VideoParams, post: PostProcess, seed: int
    ) -> None:
        self.predictor, self.info, self.folder, self.params = predictor, info, folder, params
        outside = [z.name for z in params.zones if any(x > info.width or y > info.height for x, y in z.points)]
        if outside and isinstance(predictor, DetectionPredictor):
            raise DataError(
                f"zone {outside[0]} reaches outside the {info.width}x{info.height} frames of {info.path}: "
                "give video.zones in this video's pixels"
            )
        clear(folder)
        self.writer = VideoWriter(folder / ANNOTATED, info.width, info.height, info.fps) if params.annotate else None
        self.frame_log = FrameLog(folder / FRAMES)
        names = predictor.preprocessing.class_names
        detector = isinstance(predictor, DetectionPredictor)
        self.tracker = Tracker(params, info.fps, names, post.nms_iou) if detector else None
        self.tracks, self.segments, self.smoother = TrackTable(), Segments(), Smoother(params.smoothing_seconds)
        frames = max(1, math.ceil(params.zone_seconds * (info.fps or 30.0) - 1e-9))
        self.zones = Zones(params.zones, names, frames) if detector and params.zones else None
        self.rng = np.random.default_rng(seed)
        self.logged: list[dict[str, Any]] = []
        self.done = 0  # frames answered and written
        self.cost: float | None = None  # seconds to answer a frame, a moving average
        self.stages = Stages()

    def answer(self, frame: Frame, outputs: tuple[np.ndarray, ...], pixels: np.ndarray) -> None:
        """One frame's model outputs (and its model input, `pixels`) into every output."""
        if self.rng.random() < self.params.log_fraction:  # the service's log row, for drift monitoring
            with self.stages("log"):
                width, height = frame.image.size
                pre = self.predictor.preprocessing
                decoded = DecodedImage(pixels, width, height, image_features(pixels), "video", pre.resize)
                _, row = self.predictor.reply(outputs, decoded)
                self.logged.append({"endpoint": "video", "request_id": new_request_id(), **row})
        with self.stages("track" if self.tracker else "smooth"):
            record, draw = self._tracked(frame, outputs) if self.tracker else self._smoothed(frame, outputs[0])
        if self.writer:
            with self.stages("annotate"):
                picture = draw()
            with self.stages("encode"):
                self.writer.write(picture, frame.time)
        with self.stages("write"):
            self.frame_log.write(record)
        self.done += 1

    def _tracked(self, frame: Frame, outputs: tuple[np.ndarray, ...]) -> tuple[dict[str, Any], Drawing]:
        assert self.tracker is not None
        found = self.predictor.detections(outputs[:3], *frame.image.size)  # type: ignore[attr-defined]
        tracked = self.tracker.update(found, frame.time)
        self.tracks.add(frame.index, frame.time, tracked)
        events = self.zones.update(tracked) if self.zones else []
        record = {"frame": frame.index, "time": round(frame.time, 4), "detections": tracked}

        def draw() -> Image.Image:
            picture = annotate(frame.image, tracked)
            return draw_zones(picture, self.params.zones, self.zones.totals()) if self.zones else picture

        return (record | {"events": events} if events else record), draw

    def _smoothed(self, frame: Frame, probabilities: np.ndarray) -> tuple[dict[str, Any], Drawing]:
        names = self.predictor.preprocessing.class_names
        smooth = self.smoother.update(frame.time, probabilities)
        label, score = names[int(smooth.argmax())], float(smooth.max())
        self.segments.add(frame.index, frame.time, label, score)
        raw = names[int(probabilities.argmax())]  # the frame's own label, before smoothing
        record = {"frame": frame.index, "time": round(frame.time, 4), "label": label, "score": round(score, 6)}
        return record | {"raw": raw}, lambda: caption(frame.image, label, score)

    def timed(self, frames: int, seconds: float) -> None:
        """How long `frames` frames took to answer: the rate a live source's frames are taken at."""
        per_frame = seconds / frames
        self.cost = per_frame if self.cost is None else 0.8 * self.cost + 0.2 * per_frame

    def seconds_per_frame(self) -> float:
        return self.cost or 0.0

    def close(self, stopped: str | None, seconds: float, live: dict[str, Any]) -> dict[str, Any]:
        """Close every output as it is and write the summary, last: `complete` unless `stopped` says why not."""
        self.frame_log.close()
        if self.writer:
            self.writer.close()
        if self.tracker:
            write_table(self.folder / TRACKS, TrackTable.COLUMNS, self.tracks.rows())
        else:
            write_table(self.folder / SEGMENTS, Segments.COLUMNS, self.segments.table())
        if self.zones:
            write_table(self.folder / ZONES, ZONE_COLUMNS, self.zones.table())
        summary = {
            "video": str(self.info.path),
            "model_name": self.predictor.model_name,
            "model_version": self.predictor.version,
            "frames": self.done,
            "width": self.info.width,
            "height": self.info.height,
            "fps": round(self.info.fps, 3),
            "processing_fps": round(self.done / seconds, 2) if seconds else None,
            **({"tracks": len(self.tracks.tracks)} if self.tracker else {"segments": len(self.segments.rows)}),
            **({"zones": self.zones.totals()} if self.zones else {}),
            "logged_frames": len(self.logged),
            "seconds_by_stage": {name: round(seconds, 3) for name, seconds in self.stages.seconds.items()},
            **live,
            "complete": stopped is None,
            "stopped": stopped,
        }
        write_summary(self.folder / SUMMARY, summary)
        return summary


def open_source(
    location: str, params: VideoParams, limit: float | None, shown_as: str | None = None
) -> Frames | LiveFrames:
    """A file's every frame as fast as the job goes; a live source (or a file under `video.fps_budget`) as it
    comes, the frames the job cannot keep up with dropped. `shown_as`: the name its summary and logs give a
    file read from a copy (an s3:// object's)."""
    if is_live(location) or params.fps_budget:
        return LiveFrames(location, params.fps_budget, params.reconnect, limit, shown_as)
    return Frames(Path(location), shown_as)


def track_video(
    predictor: Predictor,
    source: Frames | LiveFrames,
    folder: Path,
    params: VideoParams,
    post: PostProcess,
    seed: int,
    logged: Callable[[list[dict[str, Any]]], object] | None = None,
) -> dict[str, Any]:
    """One video or stream through `predictor` into `folder`: its summary; its sampled frames' rows go to
    `logged` (the inference log's append). SIGTERM ends the job after the frames in hand (every output then
    holds the same frames): the outputs are closed, the summary says `complete: false`, and the stop goes on up
    as SystemExit(143)."""
    try:
        run = VideoRun(predictor, source.info, folder, params, post, seed)
    except BaseException:
        source.close()
        raise
    pre, stopped, started = predictor.preprocessing, None, time.monotonic()
    ages: list[float] = []  # seconds from each frame's arrival to its answer being written
    bar = progress(None, Path(source.info.path).name, unit="frame", total=source.info.declared_frames or None)
    batches = source.batches(params.batch_frames, run.seconds_per_frame)
    try:
        with stop_requested(source) as stop:
            while not stop.is_set():
                with run.stages("read"):  # a file's decoding; a live source's wait for its next frames
                    batch = next(batches, None)
                if batch is None:
                    break
                began = time.monotonic()
                with run.stages("resize"):
                    pixels = np.stack([resize_image(a.frame.image, pre.image_size, pre.resize) for a in batch])
                with run.stages("model"):
                    outputs = predictor.predict(pixels)
                for k, arrival in enumerate(batch):
                    run.answer(arrival.frame, tuple(output[k] for output in outputs), pixels[k])
                done = time.monotonic()
                run.timed(len(batch), done - began)
                ages += [done - arrival.at for arrival in batch]
                bar.update(len(batch))
        stopped = "stopped (SIGTERM)" if stop.is_set() else None
    except BaseException as err:  # Ctrl-C or a failure: what is written stays valid, and says it is not all
        stopped = f"stopped ({type(err).__name__})"
        raise
    finally:
        bar.close()
        source.stop()  # the reader stops now; the outputs are closed before waiting for it
        live = live_counts(source, ages) if isinstance(source, LiveFrames) else {}
        summary = run.close(stopped or source.stopped, time.monotonic() - started, live)
        if logged is not None:
            logged(run.logged)
        source.close()
    if stopped:
        raise SystemExit(128 + signal.SIGTERM)  # as cvops's own handler would have: the job's exit code
    if source.stopped:
        log.warning("%s: %s; the outputs hold the frames before it", source.info.path, source.stopped)
    return summary


@contextmanager
def stop_requested(source: Frames | LiveFrames) -> Iterator[threading.Event]:
    """SIGTERM, while the block runs, sets the event (and stops a live source's reader) in place of raising at
    once: the job finishes the frames in hand, so that every output holds the same frames."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield stop
        return

    def requested(signum: int, _: object) -> None:
        stop.set()
        source.stop()

    previous = signal.signal(signal.SIGTERM, requested)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def live_counts(source: LiveFrames, ages: list[float]) -> dict[str, Any]:
    """What a live (or paced) run reports beside the counts: frames received and dropped, reconnections, and the
    age of the answers when written."""
    p50, p99 = (round(float(q) * 1000, 2) for q in np.percentile(ages, [50, 99])) if ages else (None, None)
    return {
        "frames_received": source.received,
        "frames_dropped": source.dropped,
        "reconnects": source.reconnects,
        "frame_period_ms": round(source.period * 1000, 2),
        "answer_age_ms_p50": p50,
        "answer_age_ms_p99": p99,
    }


def track_one(
    predictor: Predictor,
    video: str,
    folder: Path,
    params: VideoParams,
    post: PostProcess,
    seed: int,
    duration: float | None,
    logged: Callable[[list[dict[str, Any]]], object],
) -> dict[str, Any]:
    """One video (a file, an s3:// object, a live source for `duration` seconds) into `folder`: its summary, or
    `{"video", "error"}` saying why it could not be read."""
    try:
        with readable(video) as local:
            source = open_source(local, params, duration, shown_as=video)
            return track_video(predictor, source, folder, params, post, seed, logged)
    except DataError as err:
        return {"video": shown(video), "error": str(err)}
