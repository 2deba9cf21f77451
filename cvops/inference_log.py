"""The inference log: one JSON line per prediction, appended by a background thread so that writing
never slows a response. One file per UTC day under the log directory."""

import io
import json
import logging
import queue
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
_STOP = object()


class InferenceLog:
    """Append-only, asynchronous writer of prediction rows."""

    def __init__(self, directory: Path, capacity: int = 100_000) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.rows: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self.dropped = 0
        self.thread = threading.Thread(target=self._write, name="inference-log", daemon=True)
        self.thread.start()

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Queue rows for writing; never blocks (rows past the queue's capacity are counted and dropped)."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        for row in rows:
            try:
                self.rows.put_nowait({"timestamp": stamp, **row})
            except queue.Full:
                self.dropped += 1
                if self.dropped % 1000 == 1:  # the first, then every thousandth: loud, but never a flood
                    log.warning("inference log cannot keep up: %d rows dropped so far", self.dropped)

    def _write(self) -> None:
        while True:
            batch = [self.rows.get()]
            while not self.rows.empty() and len(batch) < 1000:
                batch.append(self.rows.get_nowait())
            rows = [row for row in batch if row is not _STOP]
            if rows:
                try:
                    day = rows[0]["timestamp"][:10]
                    with (self.directory / f"{day}.jsonl").open("a") as f:
                        f.write("".join(json.dumps(row) + "\n" for row in rows))
                except OSError:
                    log.exception("inference log: could not write %d rows", len(rows))
            if len(rows) < len(batch):
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self.rows.put(_STOP)
        self.thread.join(timeout)


def read_inference_log(directory: Path, since: datetime | None = None, last: int | None = None) -> "pd.DataFrame":
    """Rows of the log, oldest first: those at or after `since`, then the newest `last` of them."""
    import pandas as pd

    files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    if since is not None:  # files are named by UTC day
        files = [f for f in files if f.stem >= since.astimezone(UTC).strftime("%Y-%m-%d")]
    frames = []
    for f in files:
        text = f.read_text()
        text = text[: text.rfind("\n") + 1]  # a line the service is still writing is left for the next read
        if text:
            frames.append(pd.read_json(io.StringIO(text), lines=True, dtype=False))
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    rows["timestamp"] = pd.to_datetime(rows["timestamp"], utc=True)
    if since is not None:
        rows = rows[rows["timestamp"] >= pd.Timestamp(since)]
    rows = rows.sort_values("timestamp", kind="stable")
    return (rows.tail(last) if last else rows).reset_index(drop=True)
