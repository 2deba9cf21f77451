"""Frames as they come: a live source (`rtsp://`, `http(s)://`, a camera device such as `/dev/video0`), or a file
played at its own speed as if a camera sent it (with `video.fps_budget`).

A thread reads the frames as the source sends them; the job takes what waits when it is ready for more, and
keeps the newest frames it can answer within one frame period at the rate it has measured, never fewer than
one. The older ones are dropped and counted, so that the answer to the newest frame is at most about two frame
periods old however slow the machine is, and no frame waits behind a backlog. The tracker is given each
frame's time, so tracks carry across the frames dropped.

A live source that fails (a network error, the camera's server restarting) is opened again after 1, 2, 4 ...
seconds (at most 30), `video.reconnect` times in a row; its frames keep their times from the job's start, so
a gap is a gap. A stream that ends cleanly has ended: the job ends with it. A file that stops decoding
part-way ends the job as a file does."""

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import av

from cvops.env import STREAM_PASSWORD_ENV
from cvops.errors import DataError
from cvops.serving.video.decode import Arrival, Frame, Frames, VideoInfo, upright

log = logging.getLogger("cvops")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
CAMERA = "/dev/video"
MAX_BACKOFF = 30.0
OPEN_TIMEOUT = 10.0  # seconds to connect, and to wait for data once connected


def is_live(location: str) -> bool:
    """A network stream or a camera device, not a file."""
    return location.startswith(LIVE_SCHEMES) or location.startswith(CAMERA)


def shown(location: str) -> str:
    """A source's address as it may be printed, logged and stored: without a user name and password in it."""
    return _netloc(location, user=False)


def without_password(location: str) -> tuple[str, str | None]:
    """A source's address as a job stores it (ZenML keeps its inputs): its password taken out, with its user, and
    the password (None: it had none). The job puts it back from CVOPS_STREAM_PASSWORD (`with_password`)."""
    password = urlsplit(location).password if "://" in location else None
    return _netloc(location, user=True), unquote(password) if password is not None else None


def with_password(location: str) -> str:
    """The address FFmpeg opens: a user's password from CVOPS_STREAM_PASSWORD put into an address that names the
    user and no password (as `without_password` leaves it, or as a user gives it to keep the password out of the
    command line)."""
    password = os.environ.get(STREAM_PASSWORD_ENV)
    parts = urlsplit(location) if "://" in location else None
    if not password or parts is None or parts.username is None or parts.password is not None:
        return location
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _netloc(location: str, user: bool) -> str:
    if "://" not in location:
        return location
    parts = urlsplit(location)
    *userinfo, host = parts.netloc.rsplit("@", 1)
    named = userinfo[0].split(":", 1)[0] + "@" if user and userinfo else ""  # as given: percent-encoded
    return urlunsplit(parts._replace(netloc=named + host))


def open_live(location: str) -> "av.container.InputContainer":
    """A live source opened by FFmpeg; DataError when it cannot be (the job has not started: nothing to keep)."""
    options = {"rtsp_transport": "tcp"} if location.startswith(("rtsp://", "rtsps://")) else {}
    try:
        return av.open(
            with_password(location),
            format="v4l2" if location.startswith(CAMERA) else None,
            options=options,
            timeout=(OPEN_TIMEOUT, OPEN_TIMEOUT),
        )
    except (av.error.FFmpegError, OSError) as err:
        raise DataError(f"{shown(location)}: cannot open the stream ({_said(err, location)})") from None


def _said(err: Exception, location: str) -> str:
    """FFmpeg's message, which quotes the address it was given, with the address as it may be shown."""
    said = str(err).splitlines()[0]
    for address in (with_password(location), location):
        said = said.replace(address, shown(location))
    return said[:160]


class LiveFrames:
    """The frames of `location` as they come (a file: at its own speed), read on a thread."""

    def __init__(
        self, location: str, budget: float | None, reconnect: int, limit: float | None = None, name: str | None = None
    ) -> None:
        """`budget`: the frames a second to answer (None: the source's own rate). `reconnect`: how many times in
        a row a failed live source is opened again; `limit`: seconds to run (None: until the source ends or the
        job is stopped); `name`: what a file read from a copy is called (an s3:// object)."""
        self.location, self.live, self.reconnect = location, is_live(location), reconnect
        self.file: Frames | None = None
        self.container: av.container.InputContainer | None = None
        self.first: Arrival | None = None  # a live source's first frame, read on opening
        if self.live:
            self.container = open_live(location)
            self.first, self.info = self._first(self.container)
        else:
            self.file = Frames(Path(location), name)
            self.info = self.file.info
        self.period = 1.0 / (budget or self.info.fps or 30.0)
        self.pending: deque[Arrival] = deque()
        self.changed = threading.Condition()
        self.received = self.dropped = self.reconnects = 0
        self.stopped: str | None = None  # why the source ended early, if it did
        self.done = threading.Event()
        self.started = self.first.at if self.first else time.monotonic()
        self.deadline = self.started + limit if limit else None
        self.thread = threading.Thread(target=self._read, name="video-reader", daemon=True)
        self.thread.start()

    def _first(self, container: "av.container.InputContainer") -> tuple[Arrival, VideoInfo]:
        """The stream's first frame, and what it says: the size (a camera's header may give none: 0x0) and the
        rotation it is shown with, which the job's outputs are made for."""
        name = shown(self.location)
        if not container.streams.video:
            container.close()
            raise DataError(f"{name}: no video stream: give a video stream's address")
        stream = container.streams.video[0]
        try:
            frame = next(container.decode(stream))
        except (StopIteration, av.error.FFmpegError, OSError) as err:
            container.close()
            why = f" ({_said(err, self.location)})" if not isinstance(err, StopIteration) else ""
            raise DataError(f"{name}: the stream sent no frame{why}: check that the camera is sending") from None
        image = upright(frame.to_image(), round(frame.rotation or 0) % 360)
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        info = VideoInfo(name, image.width, image.height, rate, 0, stream.codec_context.name)
        return Arrival(Frame(0, 0.0, image), time.monotonic()), info

    def _read(self) -> None:
        try:
            if self.file is not None:
                self._play(self.file)
            else:
                self._watch()
        finally:
            if self.container is not None:
                self.container.close()
            if self.file is not None:
                self.file.close()
            with self.changed:  # the source has ended: the job answers what waits, then stops
                self.done.set()
                self.changed.notify_all()

    def _play(self, file: Frames) -> None:
        """A file's frames at its own speed: each when its time has come."""
        for frame in file:
            if self.done.wait(max(0.0, self.started + frame.time - time.monotonic())):
                return
            self._arrive(Arrival(frame, time.monotonic()))
        self.stopped = file.stopped

    def _watch(self) -> None:
        """A live source's frames as they come, opened again when it fails."""
        index, failures = 0, 0
        if self.first is not None:
            if not self._arrive(self.first):
                return
            index = 1
        while not self.done.is_set() and self.container is not None:
            try:
                for frame in self.container.decode(video=0):
                    now = time.monotonic()
                    image = upright(frame.to_image(), round(frame.rotation or 0) % 360)
                    if not self._arrive(Arrival(Frame(index, now - self.started, image), now)):
                        return
                    index, failures = index + 1, 0
                return  # the stream ended
            except (av.error.FFmpegError, OSError) as err:
                failures += 1
                self.container.close()
                self.container = self._reopened(err, failures)

    def _reopened(self, err: Exception, failures: int) -> "av.container.InputContainer | None":
        """The source opened again after waits of 1, 2, 4 ... s, within the tries left; None once out of them
        (or stopped)."""
        log.warning("%s failed (%s)", shown(self.location), _said(err, self.location))
        for attempt in range(failures, self.reconnect + 1):
            wait = min(2.0 ** (attempt - 1), MAX_BACKOFF)
            log.warning(
                "%s: reconnecting in %.0f s (try %d of %d)", shown(self.location), wait, attempt, self.reconnect
            )
            if self.done.wait(wait):
                return None
            try:
                container = open_live(self.location)
            except DataError as again:
                log.warning("%s", again)
                continue
            self.reconnects += 1
            log.info("%s: reconnected", shown(self.location))
            return container
        self.stopped = f"the stream failed and did not come back after {self.reconnect} tries"
        return None

    def _arrive(self, arrival: Arrival) -> bool:
        """Queue a frame for the job; False once the job has stopped taking them."""
        with self.changed:
            if self.done.is_set():
                return False
            self.pending.append(arrival)
            self.received += 1
            self.changed.notify_all()
            return True

    def batches(self, size: int, seconds_per_frame: Callable[[], float]) -> Iterator[list[Arrival]]:
        """What waits each time the job is ready: the newest frames it can answer within one frame period at
        `seconds_per_frame()` (at most `size`, at least one); the older ones are dropped and counted."""
        while True:
            with self.changed:
                while not self.pending and not self.done.is_set() and not self._overdue():
                    self.changed.wait(0.2)
                if self._overdue() or not self.pending:
                    self.stop()
                    return
                cost = seconds_per_frame()
                fit = max(1, min(size, int(self.period / cost) if cost > 0 else size))
                taken = list(self.pending)[-fit:]
                self.dropped += len(self.pending) - len(taken)
                self.pending.clear()
            yield taken

    def _overdue(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def stop(self) -> None:
        """No more frames: the reader stops, and what waits unanswered is counted as dropped."""
        with self.changed:
            self.done.set()
            self.dropped += len(self.pending)
            self.pending.clear()
            self.changed.notify_all()

    def close(self) -> None:
        self.stop()
        self.thread.join(timeout=OPEN_TIMEOUT + 5)  # a reader blocked in FFmpeg's I/O gives up within its timeout
