"""Frames as they come: a live source (`rtsp://`, `http(s)://`, a camera device such as `/dev/video0`), or a file
read at `video.fps_budget` frames a second as if it were one.

A thread reads the frames as the source sends them; the job takes what waits when it is ready for more, and
keeps the newest frames it can answer within one frame period at the rate it has measured, never fewer than
one. The older ones are dropped and counted, so that the answer to the newest frame is at most about two frame
periods old however slow the machine is, and no frame waits behind a backlog. The tracker is given each
frame's time, so tracks carry across the frames dropped.

A live source that drops (a network error, the camera's server restarting, the stream ending) is opened again
after 1, 2, 4 ... seconds (at most 30), `video.reconnect` times in a row; the frames keep their times from the
job's start, so a gap is a gap. A file that stops decoding part-way ends the job as a file does."""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import av

from cvops.errors import DataError
from cvops.serving.video.decode import Arrival, Frame, VideoInfo, open_video

log = logging.getLogger("cvops")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
CAMERA = "/dev/video"
MAX_BACKOFF = 30.0
OPEN_TIMEOUT = 10.0  # seconds to connect, and to wait for data once connected


def is_live(location: str) -> bool:
    """A network stream or a camera device, not a file."""
    return location.startswith(LIVE_SCHEMES) or location.startswith(CAMERA)


def open_live(location: str) -> "av.container.InputContainer":
    """A live source opened by FFmpeg; DataError when it cannot be (the job has not started: nothing to keep)."""
    options = {"rtsp_transport": "tcp"} if location.startswith(("rtsp://", "rtsps://")) else {}
    try:
        return av.open(
            location,
            format="v4l2" if location.startswith(CAMERA) else None,
            options=options,
            timeout=(OPEN_TIMEOUT, OPEN_TIMEOUT),
        )
    except (av.error.FFmpegError, OSError) as err:
        raise DataError(f"{location}: cannot open the stream ({str(err).splitlines()[0][:160]})") from None


class LiveFrames:
    """The frames of `location` as they come (a file: at `pace` frames a second), read on a thread."""

    def __init__(self, location: str, budget: float | None, reconnect: int, limit: float | None = None) -> None:
        """`budget`: the frames a second to answer (None: a stream's own rate); a file is read at it. `reconnect`:
        how many times in a row a live source is opened again; `limit`: seconds to run (None: until the source
        ends or the job is stopped)."""
        self.location, self.live, self.reconnect = location, is_live(location), reconnect
        self.container, self.info = self._open()
        self.pace = None if self.live else budget
        self.period = 1.0 / (budget or self.info.fps or 30.0)
        self.pending: deque[Arrival] = deque()
        self.changed = threading.Condition()
        self.received = self.dropped = self.reconnects = 0
        self.stopped: str | None = None  # why the source ended early, if it did
        self.done = threading.Event()
        self.started = time.monotonic()
        self.deadline = self.started + limit if limit else None
        self.thread = threading.Thread(target=self._read, name="video-reader", daemon=True)
        self.thread.start()

    def _open(self) -> tuple["av.container.InputContainer", VideoInfo]:
        if not self.live:
            return open_video(Path(self.location))
        container = open_live(self.location)
        if not container.streams.video:
            container.close()
            raise DataError(f"{self.location}: no video stream: give a video stream's address")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        return container, VideoInfo(self.location, stream.width, stream.height, rate, 0, stream.codec_context.name)

    def _read(self) -> None:
        index, failures = 0, 0
        try:
            while not self.done.is_set():
                try:
                    for frame in self.container.decode(video=0):
                        if self.done.is_set():
                            return
                        if self.pace and self.done.wait(max(0.0, self.started + index / self.pace - time.monotonic())):
                            return
                        now = time.monotonic()
                        seconds = index / self.pace if self.pace else now - self.started
                        self._arrive(Arrival(Frame(index, seconds, frame.to_image()), now))
                        index, failures = index + 1, 0
                    if not self.live:
                        return  # the file's end
                    raise EOFError("the stream ended")
                except (av.error.FFmpegError, OSError, EOFError) as err:
                    if not self.live:
                        self.stopped = f"decoding stopped after frame {index}: {str(err).splitlines()[0][:120]}"
                        return
                    if not self._reconnected(err, failures):
                        return
                    failures += 1
        finally:
            self.container.close()
            with self.changed:
                self.done.set()
                self.changed.notify_all()

    def _reconnected(self, err: Exception, failures: int) -> bool:
        """Open the source again after a wait that doubles with each failure in a row; False once out of tries."""
        if failures >= self.reconnect:
            self.stopped = f"the stream dropped ({err}) and did not come back after {self.reconnect} tries"
            return False
        wait = min(2.0**failures, MAX_BACKOFF)
        log.warning("%s dropped (%s): reconnecting in %.0f s", self.location, str(err)[:120], wait)
        if self.done.wait(wait):
            return False
        try:
            self.container.close()
            self.container = open_live(self.location)
        except DataError as again:
            log.warning("%s", again)
            return True  # counted as another failure by the caller's loop
        self.reconnects += 1
        log.info("%s: reconnected", self.location)
        return True

    def _arrive(self, arrival: Arrival) -> None:
        with self.changed:
            self.pending.append(arrival)
            self.received += 1
            self.changed.notify_all()

    def batches(self, size: int, seconds_per_frame: Callable[[], float]) -> Iterator[list[Arrival]]:
        """What waits each time the job is ready: the newest frames it can answer within one frame period at
        `seconds_per_frame()` (at most `size`, at least one); the older ones are dropped and counted."""
        while True:
            with self.changed:
                while not self.pending and not self.done.is_set() and not self._overdue():
                    self.changed.wait(0.2)
                if self._overdue() or not self.pending:
                    self.dropped += len(self.pending)  # the time is up: what waits is not answered
                    self.pending.clear()
                    return
                cost = seconds_per_frame()
                fit = max(1, min(size, int(self.period / cost) if cost > 0 else size))
                taken = list(self.pending)[-fit:]
                self.dropped += len(self.pending) - len(taken)
                self.pending.clear()
            yield taken

    def _overdue(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=OPEN_TIMEOUT + 5)
