"""The inference log: one JSON row per prediction, appended by a background thread so that writing never
slows a response.

Where it goes is `Project.inference_log`: locally, one JSON-lines file per UTC day under a folder; with a
team's PostgreSQL state database, one table that every serving replica appends to (each row names its
replica), so one monitoring run reads the traffic of all of them.
"""

import io
import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvops.env import REPLICA_ENV
from cvops.stack.migrations import INFERENCE_LOG, migrate

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
_STOP = object()
TABLE = "cvops_inference_log"
FEEDBACK_TABLE = "cvops_feedback"  # true labels by request id (cvops.serving.feedback)
LogTarget = Path | str  # a folder, or a postgresql:// URL
SHADOW = "shadow"  # the arm of the rows a shadow logged: predictions no client received


def replica() -> str:
    return os.environ.get(REPLICA_ENV) or f"{socket.gethostname()}-{os.getpid()}"


class _Files:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, rows: list[dict[str, Any]]) -> None:
        """One append of whole lines: the workers of one service write the same file, and a single O_APPEND
        write() of a regular file is never interleaved with another on Linux."""
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        fd = os.open(
            self.directory / f"{rows[0]['timestamp'][:10]}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        try:
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)


class _Table:
    """Rows in the state database: (at, replica, body), one INSERT per batch, reconnecting after a failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: Any = None

    def write(self, rows: list[dict[str, Any]]) -> None:
        import psycopg2
        from psycopg2.extras import execute_values

        try:
            if self.connection is None:
                self.connection = connect(self.url)
            with self.connection, self.connection.cursor() as cursor:
                values = [(row["timestamp"], row["replica"], json.dumps(row)) for row in rows]
                execute_values(cursor, f"INSERT INTO {TABLE} (at, replica, body) VALUES %s", values)
        except psycopg2.Error as err:
            self.connection = None
            raise OSError(f"state database: {err}".strip()) from err


def connect(url: str) -> Any:
    """A connection to the state database, with the log's and the feedback's tables in place."""
    import psycopg2

    connection = psycopg2.connect(url, connect_timeout=10, application_name="cvops-inference-log")
    try:
        migrate(connection, INFERENCE_LOG)
    except BaseException:
        connection.close()
        raise
    return connection


class InferenceLog:
    """Append-only, asynchronous writer of prediction rows."""

    def __init__(self, target: LogTarget, capacity: int = 100_000) -> None:
        self.sink = _Table(target) if isinstance(target, str) else _Files(target)
        self.replica = replica()  # each row names the process that wrote it: a worker, a pod
        self.rows: queue.Queue[Any] = queue.Queue(maxsize=capacity)  # (rows, future) of each append, or _STOP
        self.dropped = 0
        self.thread = threading.Thread(target=self._write, name="inference-log", daemon=True)
        self.thread.start()

    def append(self, rows: Iterable[dict[str, Any]]) -> "Future[None]":
        """Queue rows for writing; never blocks. The future is done once they are written (or could not be:
        rows past the queue's capacity are counted and dropped, a failed write is logged): a service awaits it,
        so a request id is in the log before its answer goes out."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        written: Future[None] = Future()
        batch = [{"timestamp": stamp, "replica": self.replica, **row} for row in rows]
        try:
            self.rows.put_nowait((batch, written))
        except queue.Full:
            written.set_result(None)
            self.dropped += len(batch)
            if self.dropped % 1000 < len(batch):  # the first, then about every thousandth: loud, never a flood
                log.warning("inference log cannot keep up: %d rows dropped so far", self.dropped)
        return written

    def _write(self) -> None:
        while True:
            items = [self.rows.get()]
            while not self.rows.empty() and len(items) < 1000:
                items.append(self.rows.get_nowait())
            pending = [item for item in items if item is not _STOP]
            rows = [row for batch, _ in pending for row in batch]
            if rows:
                try:
                    self.sink.write(rows)
                except OSError:
                    log.exception("inference log: could not write %d rows", len(rows))
            for _, written in pending:
                written.set_result(None)
            if len(pending) < len(items):
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self.rows.put(_STOP)
        self.thread.join(timeout)


def read_inference_log(
    source: LogTarget, since: datetime | None = None, last: int | None = None, answers: bool = False
) -> "pd.DataFrame":
    """Rows of the log, oldest first: those at or after `since`, then the newest `last` of them. With `answers`,
    only the predictions clients received (monitoring's input): no shadow's and no failed request's rows."""
    import pandas as pd

    texts = _table_text(source, since, last, answers) if isinstance(source, str) else _files_text(source, since)
    frames = [pd.read_json(io.StringIO(text), lines=True, dtype=False) for text in texts if text]
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    rows["timestamp"] = pd.to_datetime(rows["timestamp"], utc=True)
    if since is not None:
        rows = rows[rows["timestamp"] >= pd.Timestamp(since)]
    if answers:  # rows logged before rollout existed carry neither column: they are answers
        if "arm" in rows:
            rows = rows[rows["arm"].fillna("") != SHADOW]
        if "status" in rows:
            rows = rows[pd.to_numeric(rows["status"], errors="coerce").fillna(200) == 200]
    rows = rows.sort_values("timestamp", kind="stable")
    return (rows.tail(last) if last else rows).reset_index(drop=True)


def _files_text(directory: Path, since: datetime | None) -> list[str]:
    files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    if since is not None:  # files are named by UTC day
        files = [f for f in files if f.stem >= since.astimezone(UTC).strftime("%Y-%m-%d")]
    texts = [f.read_text() for f in files]
    return [text[: text.rfind("\n") + 1] for text in texts]  # a line being written is left for the next read


def _table_text(url: str, since: datetime | None, last: int | None, answers: bool) -> list[str]:
    """The table's rows as JSON lines: every replica's, newest `last` at or after `since` (of the answers)."""
    query = (
        f"SELECT body::text FROM {TABLE} WHERE at >= %s{' AND answer' if answers else ''} ORDER BY at DESC, id DESC"
        + (" LIMIT %s" if last else "")
    )
    arguments = (since or datetime(1970, 1, 1, tzinfo=UTC), *([last] if last else []))
    connection = connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(query, arguments)
            return ["".join(f"{body}\n" for (body,) in reversed(cursor.fetchall()))]
    finally:
        connection.close()
