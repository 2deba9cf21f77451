"""Ground truth for served predictions: request ids, the true labels clients send back (a detector's: the true
boxes), and where they are kept.

Every answer carries a `request_id`, issued here: time-ordered (its first 12 hex digits are the issue time in
milliseconds), so a look-up reads only the inference log of that day. A true label comes back through
`POST /feedback`, `cvops feedback import` or `cvops traffic --feedback`; each is checked against the log (the
id must name an answer) and appended to the feedback store beside the log: `feedback/<day>.jsonl` under the log
folder, or the `cvops_feedback` table of the team's state database. A repeat replaces the earlier label.
"""

import csv
import io
import json
import math
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvops.errors import FeedbackError
from cvops.serving.inference_log import FEEDBACK_TABLE, SHADOW, TABLE, LogTarget, connect, read_inference_log

if TYPE_CHECKING:
    import pandas as pd

FEEDBACK_DIR = "feedback"  # under the inference-log folder
TRUE_LABEL = "true_label"  # the column `attach_feedback` adds to inference-log rows
TRUE_BOXES = "true_boxes"  # and, for a detector's answers, this one
BOX_FORMAT = '{"box": [x1, y1, x2, y2], "label": "<a class>"} in the pixels of the image sent'
BOX_CSV_COLUMNS = ["request_id", "label", "x1", "y1", "x2", "y2"]  # a box feedback CSV's, one line per box
_ID = re.compile(r"^[0-9a-f]{12}[0-9a-f]{20}(-[0-9]+)?$")  # an answer's id; a batch image's adds -<index>
_LOGGED_ID = re.compile(rb'"request_id": "([0-9a-f-]+)"')


class UnknownRequest(FeedbackError):
    """No answer has this request id (HTTP 404)."""


def new_request_id() -> str:
    """32 hex digits: the time in milliseconds, then 80 random bits."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def _issued(request_id: str) -> datetime:
    return datetime.fromtimestamp(int(request_id[:12], 16) / 1000, UTC)


def check_request_id(request_id: Any) -> str:
    if not isinstance(request_id, str) or not _ID.match(request_id):
        raise UnknownRequest(f"unknown request_id {str(request_id)[:80]!r}: give the request_id of an answer")
    return request_id


def find_requests(target: LogTarget, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The inference-log row of each id that names an answer (not a shadow's, not a refused or failed request's);
    unknown ids are left out."""
    wanted = {request_id for request_id in ids if _ID.match(request_id)}
    if not wanted:
        return {}
    return _find_in_table(target, wanted) if isinstance(target, str) else _find_in_files(target, wanted)


def _find_in_files(directory: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Reads the log files of the days the ids were issued on (and the next day, for ids issued just before
    midnight: a row is stamped when it is written)."""
    days: set[str] = set()
    for request_id in wanted:
        issued = _issued(request_id)
        days |= {f"{issued:%Y-%m-%d}", f"{issued + timedelta(minutes=5):%Y-%m-%d}"}
    found: dict[str, dict[str, Any]] = {}
    for day in sorted(days):
        path = directory / f"{day}.jsonl"
        data = path.read_bytes() if path.is_file() else b""
        for match in _LOGGED_ID.finditer(data):
            request_id = match.group(1).decode()
            if request_id not in wanted:
                continue
            start, end = data.rfind(b"\n", 0, match.start()) + 1, data.find(b"\n", match.end())
            if end < 0:  # a line being written
                continue
            row = json.loads(data[start:end])
            if row.get("arm") != SHADOW and row.get("status", 200) == 200:
                found[request_id] = row
    return found


def _find_in_table(url: str, wanted: set[str]) -> dict[str, dict[str, Any]]:
    connection = connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                f"SELECT body::text FROM {TABLE} WHERE body->>'request_id' = ANY(%s) AND answer",
                (sorted(wanted),),
            )
            rows = [json.loads(body) for (body,) in cursor.fetchall()]
    finally:
        connection.close()
    return {row["request_id"]: row for row in rows}


class FeedbackStore:
    """True labels by request id: append-only, the newest label of an id wins."""

    def __init__(self, target: LogTarget) -> None:
        self.target = target

    def record(self, labels: list[dict[str, Any]]) -> None:
        """Append rows of {request_id, label, source, ...} (every id already checked against the log)."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        rows = [{"at": at, **row} for row in labels]
        if not rows:
            return
        if isinstance(self.target, str):
            return self._upsert(self.target, rows)
        folder = self.target / FEEDBACK_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{at[:10]}.jsonl", "a", encoding="utf-8") as file:  # one write: whole lines
            file.write("".join(json.dumps(row) + "\n" for row in rows))

    @staticmethod
    def _upsert(url: str, rows: list[dict[str, Any]]) -> None:
        from psycopg2.extras import execute_values

        connection = connect(url)
        try:
            with connection, connection.cursor() as cursor:
                execute_values(
                    cursor,
                    f"INSERT INTO {FEEDBACK_TABLE} (request_id, at, body) VALUES %s ON CONFLICT (request_id) "
                    "DO UPDATE SET at = EXCLUDED.at, body = EXCLUDED.body",
                    [(row["request_id"], row["at"], json.dumps(row)) for row in rows],
                )
        finally:
            connection.close()

    def labels(self) -> dict[str, dict[str, Any]]:
        """The newest feedback row of each request id."""
        if isinstance(self.target, str):
            connection = connect(self.target)
            try:
                with connection, connection.cursor() as cursor:
                    cursor.execute(f"SELECT body::text FROM {FEEDBACK_TABLE} ORDER BY at")
                    rows = [json.loads(body) for (body,) in cursor.fetchall()]
            finally:
                connection.close()
        else:
            folder = self.target / FEEDBACK_DIR
            files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
            rows = [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line]
        return {row["request_id"]: row for row in rows}


def _answers(target: LogTarget, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The log row of each id; UnknownRequest when one names no answer in the log."""
    found = find_requests(target, ids)
    if missing := [request_id for request_id in ids if request_id not in found]:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UnknownRequest(
            f"unknown request_id {', '.join(missing[:3])}{more}: no answer in the inference log has it"
        )
    return found


def check_labels(target: LogTarget, labels: dict[str, str], classes: list[str]) -> dict[str, dict[str, Any]]:
    """The log row of each labelled request; FeedbackError when a label is not one of `classes`, UnknownRequest
    when an id names no answer in the log."""
    for request_id, label in labels.items():
        check_request_id(request_id)
        if label not in classes:
            raise FeedbackError(f"unknown label {label!r} for request {request_id}: give one of {', '.join(classes)}")
    return _answers(target, list(labels))


def check_boxes(boxes: Any, classes: list[str], width: int, height: int, where: str) -> list[dict[str, Any]]:
    """One image's true boxes as feedback gives them: a list of BOX_FORMAT (empty: the image holds no object);
    FeedbackError names the first wrong one."""
    if not isinstance(boxes, list):
        raise FeedbackError(f'{where}: "boxes" must be a list of {BOX_FORMAT} (an empty list: no object)')
    checked = []
    for number, item in enumerate(boxes, start=1):
        box, label = (item.get("box"), item.get("label")) if isinstance(item, dict) else (None, None)
        if not isinstance(box, list) or len(box) != 4 or not all(type(v) in (int, float) for v in box):
            raise FeedbackError(f"{where}, box {number}: give {BOX_FORMAT}")
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(map(math.isfinite, (x1, y1, x2, y2))) or not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise FeedbackError(
                f"{where}, box {number}: {box} does not lie in the {width}x{height} image sent with x1 < x2 and y1 < y2"
            )
        if label not in classes:
            raise FeedbackError(f"{where}, box {number}: unknown label {label!r}: give one of {', '.join(classes)}")
        checked.append({"box": [x1, y1, x2, y2], "label": label})
    return checked


def check_box_feedback(
    target: LogTarget, boxes: dict[str, Any], classes: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The log row of each request and its checked true boxes (`check_boxes`, against the size of the image the
    answer was for); UnknownRequest when an id names no answer."""
    for request_id in boxes:
        check_request_id(request_id)
    found = _answers(target, list(boxes))
    checked = {
        request_id: check_boxes(
            given, classes, int(found[request_id]["width"]), int(found[request_id]["height"]), f"request {request_id}"
        )
        for request_id, given in boxes.items()
    }
    return found, checked


def _record(target: LogTarget, found: dict[str, dict[str, Any]], truths: dict[str, Any], key: str, source: str) -> int:
    FeedbackStore(target).record(
        [
            {
                "request_id": request_id,
                key: truth,
                "source": source,
                "model_version": found[request_id].get("model_version"),
                "arm": found[request_id].get("arm"),
            }
            for request_id, truth in truths.items()
        ]
    )
    return len(truths)


def give_feedback(target: LogTarget, labels: dict[str, str], classes: list[str], source: str) -> int:
    """Record `labels` (request id -> true label) after checking every one (`check_labels`): all or nothing."""
    return _record(target, check_labels(target, labels, classes), labels, "label", source)


def give_box_feedback(target: LogTarget, boxes: dict[str, Any], classes: list[str], source: str) -> int:
    """Record a detector's true boxes (request id -> a list of BOX_FORMAT) after checking every one
    (`check_box_feedback`): all or nothing."""
    found, checked = check_box_feedback(target, boxes, classes)
    return _record(target, found, checked, "boxes", source)


def read_labels_csv(text: str, what: str, key: str = "request_id") -> dict[str, str]:
    """A CSV with the columns `key` (request_id, or a suspect batch's path) and label; FeedbackError names what
    is wrong with it."""
    reader = csv.DictReader(io.StringIO(text))
    if not {key, "label"} <= set(reader.fieldnames or []):
        raise FeedbackError(f"{what}: the first line must name the columns {key},label")
    labels: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        name, label = (row.get(key) or "").strip(), (row.get("label") or "").strip()
        if not name or not label:
            raise FeedbackError(f"{what}, line {line}: a {key} and a label are both needed")
        labels[name] = label
    if not labels:
        raise FeedbackError(f"{what} has no labels: write a line {key},label per {key.replace('_id', '')}")
    return labels


def read_boxes_csv(text: str, what: str) -> dict[str, list[dict[str, Any]]]:
    """A detector's true boxes from a CSV with the columns BOX_CSV_COLUMNS, one line per box in the pixels of the image
    sent (a line with a request_id alone: that image holds no object); FeedbackError names what is wrong."""
    reader = csv.DictReader(io.StringIO(text))
    if not set(BOX_CSV_COLUMNS) <= set(reader.fieldnames or []):
        raise FeedbackError(f"{what}: the first line must name the columns {','.join(BOX_CSV_COLUMNS)}")
    boxes: dict[str, list[dict[str, Any]]] = {}
    for line, row in enumerate(reader, start=2):
        request_id = (row.get("request_id") or "").strip()
        rest = [(row.get(column) or "").strip() for column in BOX_CSV_COLUMNS[1:]]
        if not request_id:
            raise FeedbackError(f"{what}, line {line}: a request_id is needed")
        image = boxes.setdefault(request_id, [])
        if not any(rest):
            continue
        try:
            image.append({"label": rest[0], "box": [float(v) for v in rest[1:]]})
        except ValueError:
            raise FeedbackError(f"{what}, line {line}: x1, y1, x2, y2 must be numbers (pixels)") from None
    if not boxes:
        raise FeedbackError(f"{what} has no boxes: write a line {','.join(BOX_CSV_COLUMNS)} per box")
    return boxes


def attach_feedback(rows: "pd.DataFrame", feedback: dict[str, dict[str, Any]]) -> "pd.DataFrame":
    """`rows` of the inference log with a `true_label` column, the feedback label or None, and a `true_boxes`
    one, a detector's true boxes or None."""
    rows = rows.copy()
    ids = rows["request_id"] if "request_id" in rows else [None] * len(rows)
    given = [feedback.get(i, {}) if isinstance(i, str) else {} for i in ids]
    rows[TRUE_LABEL] = [truth.get("label") for truth in given]
    rows[TRUE_BOXES] = [truth.get("boxes") for truth in given]
    return rows


def labelled_window(source: LogTarget, since: datetime | None, last: int | None) -> "pd.DataFrame":
    """The answers monitoring checks (`read_inference_log(answers=True)`), each with its true label or None."""
    rows = read_inference_log(source, since=since, last=last, answers=True)
    return attach_feedback(rows, FeedbackStore(source).labels()) if len(rows) else rows
