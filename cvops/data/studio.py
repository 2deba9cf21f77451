"""Label Studio through its API: a `cvops labels queue` batch becomes a project (its labelling config, a
local-files storage over the batch's images, its tasks with the model's answers as pre-annotations), and a
project's annotations come back as the JSON export `cvops labels import` reads.

The server is LABEL_STUDIO_URL (default http://localhost:8080); the credentials LABEL_STUDIO_API_KEY, a personal
access token (exchanged for a short-lived access token, as Label Studio's SDK does) or a legacy token. The
server serves the batch's images from its local-files storage, which needs LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED
=true there and the batch under its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (`labels queue` writes the image URLs
relative to it).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvops.data.labels import LABEL_CONFIG, LABEL_STUDIO
from cvops.env import LABEL_STUDIO_KEY_ENV as KEY_ENV
from cvops.env import LABEL_STUDIO_URL_ENV as URL_ENV
from cvops.errors import ConfigError, DataError, ServiceUnavailable
from cvops.stack.web import http_json

DEFAULT_URL = "http://localhost:8080"


@dataclass(frozen=True)
class Studio:
    """A Label Studio server and the Authorization header its API takes."""

    url: str
    authorization: str

    @classmethod
    def connect(cls, url: str | None = None) -> "Studio":
        url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise ConfigError(
                f"set {KEY_ENV} to your Label Studio access token (Account & Settings > Personal Access Token)"
            )
        if key.count(".") != 2:  # a legacy token
            return cls(url, f"Token {key}")
        status, answer = _request("POST", url, "/api/token/refresh", {"refresh": key}, None)
        if status != 200 or not isinstance(answer, dict) or "access" not in answer:
            raise ServiceUnavailable(f"Label Studio at {url} refused the personal access token in {KEY_ENV} ({status})")
        return cls(url, f"Bearer {answer['access']}")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One API call; its answer, or a one-line error with Label Studio's own reason."""
        status, answer = _request(method, self.url, path, body, self.authorization)
        if status in (401, 403):
            raise ServiceUnavailable(f"Label Studio at {self.url} refused the token in {KEY_ENV} ({status})")
        if status >= 400:
            raise DataError(f"Label Studio: {method} {path}: {status} {_reason(answer)}")
        return answer


def _request(method: str, url: str, path: str, body: Any, authorization: str | None) -> tuple[int, Any]:
    try:
        return http_json(method, url + path, body, authorization=authorization)
    except OSError as err:
        raise ServiceUnavailable(
            f"Label Studio at {url} does not answer ({err}): start it (`label-studio start`) or set {URL_ENV}"
        ) from err


def _reason(answer: Any) -> str:
    """Label Studio's error as one line: its detail and its first validation error."""
    if not isinstance(answer, dict):
        return str(answer)[:200]
    errors = answer.get("validation_errors") or {}
    first = next(iter(errors.items()), None) if isinstance(errors, dict) else None
    detail = str(answer.get("detail") or answer.get("message") or "")
    return (detail + (f": {first[0]}: {first[1]}" if first else "")).replace("\n", " ")[:300]


@dataclass(frozen=True)
class Pushed:
    project: int
    tasks: int
    link: str  # the project's data manager


def push_batch(studio: Studio, batch: Path, title: str) -> Pushed:
    """Create a project for the labelling batch in `batch`: its config, a local-files storage over its images
    (so that Label Studio serves them), and its tasks with their pre-annotations."""
    config, tasks_file = batch / LABEL_CONFIG, batch / LABEL_STUDIO
    if not config.is_file() or not tasks_file.is_file():
        raise DataError(f"{batch} is not a `cvops labels queue` batch: it lacks {LABEL_CONFIG} or {LABEL_STUDIO}")
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    project = studio.call("POST", "/api/projects", {"title": title, "label_config": config.read_text()})
    storage = {"project": project["id"], "title": f"cvops {batch.name}", "path": str((batch / "images").resolve())}
    studio.call("POST", "/api/storages/localfiles", storage | {"use_blob_urls": True})
    imported = studio.call("POST", f"/api/projects/{project['id']}/import", tasks)
    count = int(imported.get("task_count", len(tasks))) if isinstance(imported, dict) else len(tasks)
    return Pushed(int(project["id"]), count, f"{studio.url}/projects/{project['id']}/data")


def pull_export(studio: Studio, project: int, out: Path) -> int:
    """Write the project's annotated tasks as Label Studio's JSON export to `out` (whole, or not at all); how
    many tasks it holds. Each annotation's labeller, a user id in Label Studio 1.2x's export, is written as the
    user object older exports held ({"id", "email"}), so that the labeller is recorded by email."""
    tasks = studio.call("GET", f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=false")
    if not isinstance(tasks, list):
        raise DataError(f"Label Studio: project {project}'s export is not a list of tasks")
    emails = {user["id"]: user.get("email", "") for user in studio.call("GET", "/api/users")}
    for annotation in (a for task in tasks for a in task.get("annotations") or []):
        if annotation.get("completed_by") in emails:
            annotation["completed_by"] = {"id": annotation["completed_by"], "email": emails[annotation["completed_by"]]}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    partial.replace(out)
    return len(tasks)
