"""The BentoML services: a classifier's POST /classify, /classify_batch and /feedback, a detector's POST
/detect (?render=1: the image with its boxes drawn) and /detect_batch, answered by the registry's champion (or
a pinned version), with Prometheus metrics, an optional API token and an inference log. `cvops serve` starts
the one of the checkout's task (packaging.SERVICES).

Rollout (serve.canary, serve.shadow): a canary, the challenger, answers a share of the requests (sticky per
X-Request-Key); a shadow scores a share of the champion's requests after they are answered. Every answer names
its version, arm and request_id; the log and the metrics carry the arm.

Started by `cvops serve`, which sets the environment this module reads:
  CVOPS_ROOT        the checkout (params.yaml: serve.*, the MLflow store, the inference log)
  CVOPS_SERVE_MODEL alias (champion) or version number; an alias is polled, and a new version is
                    swapped in atomically (requests in flight finish on the model they started with)
  CVOPS_BENTO_MODEL instead of the registry: a packaged model in BentoML's store (what a bento serves)
  CVOPS_API_TOKEN   when set, every request but the probes and /metrics needs `Authorization: Bearer <token>`
  CVOPS_SERVE_OVERRIDES  `cvops serve`'s options (--workers, --canary, --shadow) as params overrides, a JSON list

Built-in BentoML endpoints: GET /healthz, /livez, /readyz (200 once the model is loaded), /metrics.
"""

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import random
import threading
import time
import typing as t
import urllib.parse
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import bentoml
import numpy as np
import prometheus_client as prom

from cvops.config import Project
from cvops.env import API_TOKEN_ENV, BENTO_MODEL_ENV, SERVE_MODEL_ENV, SERVE_OVERRIDES_ENV
from cvops.errors import FeedbackError, ModelError
from cvops.serving.capture import CAPTURE, CaptureStore
from cvops.serving.feedback import UnknownRequest, check_request_id, give_feedback, new_request_id
from cvops.serving.inference_log import InferenceLog
from cvops.serving.loading import ModelFiles, load, load_served
from cvops.serving.predictor import MODEL_FILE, DecodedImage, Predictor, Reply, RequestError, decode_image
from cvops.serving.projection import PROJECTION_FILE
from cvops.serving.rollout import CANARY, CHAMPION, KEY_HEADER, SHADOW, takes_share
from cvops.tasks.detection.predictor import render

log = logging.getLogger("cvops.serving")
log.setLevel(logging.INFO)  # BentoML's root logger stops at WARNING; which version serves is worth a line
PROJECT = Project.find()
PARAMS = PROJECT.params(json.loads(os.environ.get(SERVE_OVERRIDES_ENV) or "[]"))
SETTINGS = PARAMS.serve
OPEN_PATHS = {"/healthz", "/livez", "/readyz", "/metrics"}
FEEDBACK = "/feedback"
RAW_TYPES = ("image/", "application/octet-stream")  # a body that is the image file itself
RENDER = "render"  # POST /detect?render=1: the image sent, with its boxes drawn (PNG)
CLASSIFY = {"/classify": "image", "/classify_batch": "images"}  # a classifier's endpoints, to their file field
DETECT = {"/detect": "image", "/detect_batch": "images"}  # a detector's
ENDPOINTS = {*CLASSIFY, *DETECT, FEEDBACK}

REQUESTS = prom.Counter("cvops_requests", "Requests by endpoint, HTTP status and arm", ["endpoint", "status", "arm"])
LATENCY = prom.Histogram(
    "cvops_request_seconds",
    "Time to answer a request (the shadow's arm: to score it aside)",
    ["endpoint", "arm"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PREDICTIONS = prom.Counter(
    "cvops_predictions", "Predicted labels (a detector's: one per box)", ["label", "model_version", "arm"]
)
MODEL = prom.Gauge(
    "cvops_model_info",
    "The version serving each arm (1 = current)",
    ["model_version", "arm"],
    multiprocess_mode="livemax",
)  # with several workers: 1 while any of them serves it
SHADOWED = prom.Counter("cvops_shadow_requests", "Requests the shadow scored, failed on or skipped", ["outcome"])
SHADOW_BACKLOG = 64  # requests the shadow may have in flight; past it, requests go unshadowed (counted as skipped)


Body = dict[str, t.Any] | bytes  # JSON, or a PNG (a rendered detection)


async def _respond(send: t.Any, status: int, body: Body, request_id: str | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = b"image/png" if isinstance(body, bytes) else b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(data)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _json_error(send: t.Any, status: int, message: str) -> None:
    await _respond(send, status, {"error": message})


class RequestGuard:
    """ASGI middleware, inside BentoML's metrics, tracing and timeout middleware: the API token (401) on every
    path but the probes and /metrics, and the whole of the service's POST endpoints (`files`: path to its file
    field) and /feedback (`feedback`). A body is read once (413 past serve.max_request_bytes), parsed once by its
    content type (a raw image, JSON, multipart; 415 for anything else) and handed to the service: BentoML's own
    parsing would parse multipart twice, write every upload to a temporary file, and answer a malformed body
    with a 500. The other task's endpoints get a 404 that names this service's."""

    def __init__(
        self, app: t.Any, token: str | None, max_bytes: int, files: dict[str, str], feedback: bool, serves: str
    ) -> None:
        self.app, self.token, self.max_bytes, self.files = app, token, max_bytes, files
        self.answered = {*files, FEEDBACK} if feedback else set(files)
        self.elsewhere = f"this service serves a {serves}: POST {' or '.join(files)}"

    async def __call__(self, scope: t.Any, receive: t.Any, send: t.Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.token:
            given = headers.get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return await _json_error(send, 401, "missing or wrong API token: send 'Authorization: Bearer <token>'")
        if scope["method"] == "POST" and scope["path"] in ENDPOINTS - self.answered:
            return await _json_error(send, 404, self.elsewhere)
        if scope["method"] != "POST" or scope["path"] not in self.answered:
            return await self.app(scope, receive, send)
        too_big = f"request body over {self.max_bytes} bytes (serve.max_request_bytes)"
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await _json_error(send, 413, too_big)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _json_error(send, 413, too_big)
            if not message.get("more_body"):
                break
        service = bentoml.get_current_service()
        if scope["path"] == FEEDBACK:
            return await _respond(send, *await service.record_feedback(b"".join(chunks)))
        endpoint = scope["path"].lstrip("/")
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        try:
            drawn = _rendered(scope, endpoint, "/detect" in self.files)
            field = self.files[scope["path"]]
            images: list[bytes] | RequestError = await _images(
                scope, b"".join(chunks), content_type, field, _single(endpoint)
            )
        except RequestError as err:
            images, drawn = err, False
        key = headers.get(KEY_HEADER.encode(), b"").decode("latin-1") or None
        status, body, request_id = await service.answer(endpoint, images, key, drawn)
        await _respond(send, status, body, request_id)


def _single(endpoint: str) -> bool:
    return not endpoint.endswith("_batch")


def _rendered(scope: t.Any, endpoint: str, detector: bool) -> bool:
    """Whether the request asks for the image with its boxes drawn (?render=1 on a `detector`'s /detect)."""
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    value = (query.get(RENDER) or ["0"])[-1].lower()
    if value not in ("0", "1", "true", "false"):
        raise RequestError(400, f"render={value}: send render=1 for the image with its boxes drawn, or leave it out")
    if value in ("1", "true") and not detector:
        raise RequestError(400, "render=1 draws a detector's boxes, and this service serves a classifier")
    if value in ("1", "true") and endpoint != "detect":
        raise RequestError(400, "render=1 draws one image's boxes: POST the image to /detect?render=1")
    return value in ("1", "true")


async def _images(scope: t.Any, body: bytes, content_type: str, field: str, single: bool) -> list[bytes]:
    """The image files a request carries, by its content type; RequestError says what is wrong with it."""
    if content_type.startswith(RAW_TYPES):
        if not single:
            raise RequestError(
                415, f"a raw body holds one image: send several as multipart files '{field}' or JSON '{field}_base64'"
            )
        return [body]
    if content_type.startswith("multipart/form-data"):
        files, texts = await _multipart(scope, body, field)
    elif content_type.startswith("application/json") or not body:
        files, texts = [], _json_texts(body, field)
    else:
        kind = content_type.split(";")[0] or "none"
        raise RequestError(
            415,
            f"content type {kind}: send the image file (image/*), JSON ({field}_base64) or "
            f"multipart/form-data (file '{field}')",
        )
    if single:
        if len(files) + len(texts) != 1:
            problem = f"{len(files)} files under 'image'" if len(files) > 1 else "send exactly one of"
            raise RequestError(400, f"{problem}: multipart file 'image', JSON 'image_base64', or the image's bytes")
    elif not files and not texts:
        raise RequestError(400, "send images: repeated multipart file 'images', or JSON 'images_base64'")
    elif len(files) + len(texts) > SETTINGS.max_batch_images:
        raise RequestError(413, f"{len(files) + len(texts)} images: at most {SETTINGS.max_batch_images} per request")
    return files + [_b64(text) for text in texts]


def _json_texts(body: bytes, field: str) -> list[str]:
    """The base64 strings of a JSON body: {"image_base64": "..."} or {"images_base64": ["...", ...]}."""
    try:
        payload = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"not valid JSON: {str(err)[:120]}") from err
    if not isinstance(payload, dict):
        raise RequestError(400, f'send a JSON object: {{"{field}_base64": ...}}')
    if unknown := sorted(set(payload) - {f"{field}_base64"}):
        raise RequestError(400, f"unknown field '{unknown[0]}': send the image as '{field}_base64'")
    value = payload.get(f"{field}_base64")
    values = [] if value is None else value if field == "images" else [value]
    if not isinstance(values, list) or not all(isinstance(text, str) for text in values):
        raise RequestError(400, f"'{field}_base64' must be {'a list of strings' if field == 'images' else 'a string'}")
    return values


async def _multipart(scope: t.Any, body: bytes, field: str) -> tuple[list[bytes], list[str]]:
    """The files under `field` and the base64 texts under `{field}_base64` of a multipart body, parsed once."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def once() -> t.Any:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception as err:  # starlette raises several types for a malformed body
        raise RequestError(400, f"malformed multipart body: {getattr(err, 'detail', err)}") from err
    try:
        if unknown := sorted(set(form.keys()) - {field, f"{field}_base64"}):
            raise RequestError(400, f"unknown field '{unknown[0]}': send the image as the file field '{field}'")
        uploads, texts = form.getlist(field), form.getlist(f"{field}_base64")
        if any(not isinstance(value, UploadFile) for value in uploads):
            raise RequestError(400, f"field '{field}' must be a file upload")
        if any(not isinstance(value, str) for value in texts):
            raise RequestError(400, f"field '{field}_base64' must be text, not a file")
        return [await upload.read() for upload in uploads], [str(text) for text in texts]  # type: ignore[union-attr]
    finally:
        await form.close()


def _b64(text: str) -> bytes:
    """Base64, or a data URI of it as browsers make them (data:image/png;base64,...)."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise RequestError(400, "a data URI must be base64: data:image/...;base64,...")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, "not valid base64") from err


@dataclass
class Arm:
    """A way a request can be served: the version a selector names, the share of requests it takes, its model
    (None while it has none: a canary no longer the challenger, a version that failed to load)."""

    name: str  # champion | canary | shadow
    selector: str  # an alias (followed) or a version number
    fraction: float
    predictor: Predictor | None = None
    failed: str | None = None  # a version that failed to load: tried again only once the selector moves on


class Vision:
    """What the classifier's and the detector's services share: the arms (champion, canary, shadow) and their
    models, following the registry, answering, capture, the inference log. A subclass names its task and
    endpoints."""

    TASK: t.ClassVar[str]

    def __init__(self) -> None:
        self.packaged = os.environ.get(BENTO_MODEL_ENV)  # a bento: the model in BentoML's store, no registry
        self.champion = Arm(CHAMPION, os.environ.get(SERVE_MODEL_ENV) or CHAMPION, 1.0)
        canary, shadow = SETTINGS.canary, SETTINGS.shadow
        self.canary = Arm(CANARY, canary.version, canary.fraction) if canary.version else None
        self.shadow = Arm(SHADOW, shadow.version, shadow.fraction) if shadow.version else None
        self.rng = random.Random()
        self.shadows: set[asyncio.Task[None]] = set()  # scoring in flight (a reference keeps each task alive)
        if self.packaged:
            self.champion.predictor = self._checked(_packaged(self.packaged))
            _announce(None, self.champion)
            if self.canary or self.shadow:
                log.warning("a bento serves its one packaged model: serve.canary and serve.shadow are ignored")
                self.canary = self.shadow = None
        else:
            for arm in self.arms:
                self._refresh(arm)
        self.inference_log = InferenceLog(PROJECT.inference_log(SETTINGS))
        self.captures = CaptureStore(PROJECT.capture_store(SETTINGS)) if SETTINGS.capture.enabled else None
        if not self.packaged and any(arm.name == CANARY or not arm.selector.isdigit() for arm in self.arms):
            threading.Thread(target=self._follow, name="follow-registry", daemon=True).start()

    @property
    def arms(self) -> list[Arm]:
        return [arm for arm in (self.champion, self.canary, self.shadow) if arm is not None]

    def _served(self, arm: Arm) -> t.Any:
        """The version `arm` serves now, as a ServedModel (imports MLflow, which a bento does without)."""
        import mlflow

        from cvops.errors import RegistryError
        from cvops.registry.artifacts import resolve
        from cvops.registry.model_registry import ModelRegistry
        from cvops.serving.rollout import canary_version

        mlflow.set_tracking_uri(PROJECT.tracking_uri)
        registry = ModelRegistry.of(PROJECT, PARAMS.registry.model_name)
        if arm.name == CANARY:
            info = canary_version(registry, arm.selector)
            return info and resolve(registry, info.version, PROJECT.onnx_cache)
        try:
            return resolve(registry, arm.selector, PROJECT.onnx_cache)
        except RegistryError:
            if arm.name == CHAMPION:
                raise
            return None  # a shadow's alias names no version now

    def _refresh(self, arm: Arm) -> None:
        """Load the version `arm` names now if it changed, and swap it in atomically: requests in flight finish
        on the model they started with. A canary or shadow that fails to load is switched off, and logged."""
        served = self._served(arm)
        version, current = served and served.version, arm.predictor
        if version == (current and current.version) or (version and version == arm.failed):
            return
        threads = 1 if arm.name == SHADOW else SETTINGS.model_threads  # a shadow competes less for the CPU
        try:
            loaded = served and self._checked(
                load_served(served, SETTINGS.max_batch_images, PARAMS.detect.served, threads, SETTINGS.top_k)
            )
        except Exception:
            if arm.name == CHAMPION:
                raise
            log.exception("could not load version %s as the %s: the %s is off", version, arm.name, arm.name)
            arm.failed, loaded = version, None
        arm.predictor = loaded  # one assignment: a request sees the old model or the new
        _announce(current, arm)

    def _checked(self, predictor: Predictor) -> Predictor:
        """`predictor`, if it is a model of this service's task; a ModelError saying which service it needs."""
        if (task := predictor.preprocessing.task) != self.TASK:
            raise ModelError(
                f"{predictor.model_name} version {predictor.version} is a {task} model and this "
                f"service serves {self.TASK}: set task: {task} in params.yaml"
            )
        return predictor

    def _follow(self) -> None:
        """Poll the registry: follow each alias, and switch the canary off once it is no longer the challenger.
        The champion comes last: a promoted canary has stopped answering as the canary once it answers as the
        champion."""
        while True:
            time.sleep(SETTINGS.poll_seconds)
            for arm in reversed(self.arms):
                try:
                    self._refresh(arm)
                except Exception:  # keep serving the current model; the log says why
                    log.exception("could not follow '%s' for the %s", arm.selector, arm.name)

    def _route(self, key: str | None) -> Arm:
        canary = self.canary
        if canary and canary.predictor and takes_share(canary.fraction, key, self.rng):
            return canary
        return self.champion

    async def answer(
        self, endpoint: str, images: list[bytes] | RequestError, key: str | None, drawn: bool = False
    ) -> tuple[int, Body, str]:
        """Answer a request for `images` (or the error its body had): (HTTP status, body, request id); the body
        is the JSON answer, or with `drawn` the image with its detections drawn (PNG)."""
        start = time.perf_counter()
        request_id = new_request_id()
        arm = self._route(key)
        predictor = arm.predictor  # this request finishes on this model, even if a swap happens meanwhile
        assert predictor is not None  # the champion always has one; a canary without one is never routed to
        rows: list[dict[str, t.Any]] = []
        decoded: list[DecodedImage] = []
        body: Body
        try:
            if isinstance(images, RequestError):
                raise images
            decoded = _decode(images, predictor.preprocessing.image_size)
            single = _single(endpoint)
            ids = [request_id] if single else [f"{request_id}-{i}" for i in range(len(decoded))]
            replies = await _replies(predictor, decoded, ids)
            answers = [{**answer, "request_id": row["request_id"], "arm": arm.name} for answer, row in replies]
            rows = [row for _, row in replies]
            status, body = 200, (answers[0] if single else {"results": answers})
            if drawn:
                body = await asyncio.to_thread(render, images[0], answers[0]["detections"])
        except RequestError as err:
            status, body = err.status, {"error": str(err)}
        except Exception as err:  # the model failed: the client learns which version, the log why
            log.exception("version %s (%s) failed", predictor.version, arm.name)
            status, body = 500, {"error": f"model version {predictor.version} failed: {type(err).__name__}"}
        if rows and self.captures is not None:
            await self._capture(images, decoded, rows)  # type: ignore[arg-type]  # rows: the images were read
        seconds = time.perf_counter() - start
        REQUESTS.labels(endpoint=endpoint, status=str(status), arm=arm.name).inc()
        LATENCY.labels(endpoint=endpoint, arm=arm.name).observe(seconds)
        # in the log before the answer goes out: feedback sent on receiving it always finds its request
        await asyncio.wrap_future(
            self._log(endpoint, arm, predictor, rows or [{"request_id": request_id}], status, seconds)
        )
        if status == 200 and arm is self.champion and not isinstance(images, RequestError):
            self._score_in_shadow(endpoint, images, decoded, [row["request_id"] for row in rows])
        return status, body, request_id

    async def _capture(self, raw: list[bytes], decoded: list[DecodedImage], rows: list[dict[str, t.Any]]) -> None:
        """Keep the images serve.capture selects (a random share, and the unsure ones), and name each one's key
        in its log row; an image that could not be stored is logged, and its row names no capture."""
        store = self.captures
        assert store is not None
        chosen = [i for i, row in enumerate(rows) if SETTINGS.capture.wants(row["score"], self.rng.random())]
        writes = (asyncio.to_thread(store.keep, rows[i]["request_id"], decoded[i].format, raw[i]) for i in chosen)
        stored = await asyncio.gather(*writes, return_exceptions=True)
        for i, outcome in zip(chosen, stored, strict=True):
            if isinstance(outcome, BaseException):
                log.error("could not capture request %s to %s: %s", rows[i]["request_id"], store.location, outcome)
            else:
                rows[i][CAPTURE] = outcome

    def _log(
        self, endpoint: str, arm: Arm, predictor: Predictor, rows: list[dict[str, t.Any]], status: int, seconds: float
    ) -> "Future[None]":
        """One inference-log row per image (one per request when it failed), naming the arm and version; the
        future is done once they are written."""
        stamp = {
            "endpoint": endpoint,
            "arm": arm.name,
            "model_version": predictor.version,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        for row in rows:  # a classifier's label; each of a detector's boxes
            for label in row.get("labels", [row["label"]] if "label" in row else []):
                PREDICTIONS.labels(label=label, model_version=predictor.version, arm=arm.name).inc()
        return self.inference_log.append({**stamp, **row} for row in rows)

    def _score_in_shadow(self, endpoint: str, raw: list[bytes], decoded: list[DecodedImage], ids: list[str]) -> None:
        """Score the champion's request with the shadow (its share of them) off the response path; past a
        backlog of SHADOW_BACKLOG requests, requests are skipped (counted): a slow shadow never holds answers
        or memory back."""
        shadow = self.shadow
        if shadow is None or shadow.predictor is None or not takes_share(shadow.fraction, rng=self.rng):
            return
        if len(self.shadows) >= SHADOW_BACKLOG:
            SHADOWED.labels(outcome="skipped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(endpoint, shadow, raw, decoded, ids))
        self.shadows.add(task)
        task.add_done_callback(self.shadows.discard)

    async def _shadow(
        self, endpoint: str, shadow: Arm, raw: list[bytes], decoded: list[DecodedImage], ids: list[str]
    ) -> None:
        predictor = shadow.predictor
        if predictor is None:
            return
        start = time.perf_counter()
        rows: list[dict[str, t.Any]] = [{"request_id": i} for i in ids]
        try:
            size = predictor.preprocessing.image_size
            if size != decoded[0].pixels.shape[0]:  # the shadow takes another input size: decode again, aside
                decoded = await asyncio.to_thread(_decode, raw, size)
            rows = [row for _, row in await _replies(predictor, decoded, ids)]
            status, outcome = 200, "scored"
        except Exception:
            log.warning("the shadow (version %s) failed on request %s", predictor.version, ids[0], exc_info=True)
            status, outcome = 500, "failed"
        seconds = time.perf_counter() - start
        SHADOWED.labels(outcome=outcome).inc()
        LATENCY.labels(endpoint=endpoint, arm=SHADOW).observe(seconds)
        self._log(endpoint, shadow, predictor, rows, status, seconds)

    async def _typed(self, ctx: bentoml.Context, endpoint: str, images: list[bytes]) -> t.Any:
        problem = not images or (_single(endpoint) and len(images) > 1)
        status, body, request_id = await self.answer(
            endpoint, RequestError(400, "send the image(s)") if problem else images, None
        )
        ctx.response.status_code = status
        ctx.response.headers["X-Request-ID"] = request_id
        return body


def _image_endpoints(endpoint: str, one_doc: str, batch_doc: str) -> tuple[t.Any, t.Any]:
    """The typed endpoints `endpoint` and `endpoint`_batch, which BentoML documents (OpenAPI, /docs) and its
    Python client calls. Over HTTP, RequestGuard parses their bodies and calls `answer` before BentoML would;
    these bodies serve calls made in Python."""

    async def one(
        self: Vision,
        ctx: bentoml.Context,
        image: Path = None,  # type: ignore[assignment]  # noqa: RUF013 (BentoML rejects Optional[Path])
        image_base64: str | None = None,
    ) -> dict[str, t.Any]:
        images = [image.read_bytes()] if image is not None else [_b64(image_base64)] if image_base64 else []
        return await self._typed(ctx, endpoint, images)

    async def batch(
        self: Vision,
        ctx: bentoml.Context,
        images: list[Path] = None,  # type: ignore[assignment]  # noqa: RUF013
        images_base64: list[str] | None = None,
    ) -> dict[str, t.Any]:
        files = [path.read_bytes() for path in images or []] + [_b64(text) for text in images_base64 or []]
        return await self._typed(ctx, f"{endpoint}_batch", files)

    one.__name__, one.__qualname__, one.__doc__ = endpoint, endpoint, one_doc
    batch.__name__, batch.__qualname__, batch.__doc__ = f"{endpoint}_batch", f"{endpoint}_batch", batch_doc
    return bentoml.api(one), bentoml.api(batch)


SERVICE_OPTIONS: dict[str, t.Any] = {
    "name": PARAMS.registry.bento_name,
    "workers": SETTINGS.worker_count,
    "traffic": {"timeout": 60},
    "logging": {"access": {"enabled": SETTINGS.access_log}},
}


@bentoml.service(**SERVICE_OPTIONS)
class Classifier(Vision):
    """POST /classify, /classify_batch and /feedback (task: classification)."""

    TASK = "classification"

    async def record_feedback(self, body: bytes) -> tuple[int, dict[str, t.Any]]:
        """POST /feedback {"request_id": ..., "label": ...}: record the true label of an answer (a repeat
        replaces it). 404 for an id no answer has, 400 for a label the model does not know."""
        try:
            payload = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError) as err:
            return 400, {"error": f"not valid JSON: {str(err)[:120]}"}
        if not isinstance(payload, dict) or not {"request_id", "label"} <= set(payload):
            return 400, {
                "error": 'send a JSON object {"request_id": "<the answer\'s request_id>", "label": "<a class>"}'
            }
        if unknown := sorted(set(payload) - {"request_id", "label"}):
            return 400, {"error": f"unknown field '{unknown[0]}': send request_id and label"}
        predictor = self.champion.predictor
        assert predictor is not None
        request_id, label = payload["request_id"], payload["label"]
        try:
            check_request_id(request_id)
            await asyncio.to_thread(
                give_feedback,
                PROJECT.inference_log(SETTINGS),
                {request_id: label},
                predictor.preprocessing.class_names,
                "api",
            )
        except UnknownRequest as err:
            return 404, {"error": str(err)}
        except FeedbackError as err:
            return 400, {"error": str(err)}
        return 200, {"request_id": request_id, "label": label, "recorded": True}

    classify, classify_batch = _image_endpoints(
        "classify",
        """One image: the image's bytes as the body (Content-Type image/*), multipart file field `image`, or
        JSON {"image_base64": "..."} (plain or a data: URI). Top-k labels with scores, the version, arm and
        request_id.""",
        """Several images: repeated multipart file field `images`, or JSON {"images_base64": [...]}.""",
    )

    @bentoml.api
    async def feedback(self, ctx: bentoml.Context, request_id: str, label: str) -> dict[str, t.Any]:
        """The true label of an answer: {"request_id": "<the answer's request_id>", "label": "<a class>"}. An
        unknown request_id is 404, an unknown label 400; sending it again replaces the label."""
        status, body = await self.record_feedback(json.dumps({"request_id": request_id, "label": label}).encode())
        ctx.response.status_code = status
        return body


@bentoml.service(**SERVICE_OPTIONS)
class Detector(Vision):
    """POST /detect (?render=1) and /detect_batch (task: detection)."""

    TASK = "detection"

    detect, detect_batch = _image_endpoints(
        "detect",
        """One image, sent as to /classify. Its detections ({"box": [x1, y1, x2, y2] in the pixels of the image
        sent, "label", "score"}, best first), the version, arm and request_id. Over HTTP, POST /detect?render=1
        returns the image with its boxes drawn (PNG).""",
        """Several images, sent as to /classify_batch: {"results": [one /detect answer per image]}.""",
    )


async def _replies(predictor: Predictor, decoded: list[DecodedImage], ids: list[str]) -> list[Reply]:
    """The images' answers and log rows (each row with its request id), the model run through the batcher."""
    outputs = await predictor.batcher.submit(np.stack([image.pixels for image in decoded]))
    replies = [predictor.reply(tuple(output[k] for output in outputs), image) for k, image in enumerate(decoded)]
    return [(answer, {"request_id": i, **row}) for (answer, row), i in zip(replies, ids, strict=True)]


def _decode(raw: list[bytes], size: int) -> list[DecodedImage]:
    """The request's images, validated and resized for a model of input `size`; RequestError names the bad one."""
    decoded = []
    for index, data in enumerate(raw):
        try:
            decoded.append(decode_image(data, size, SETTINGS.max_image_pixels))
        except RequestError as err:
            raise RequestError(err.status, f"image {index}: {err}" if len(raw) > 1 else str(err)) from err
    return decoded


def _announce(replaced: Predictor | None, arm: Arm) -> None:
    """The model-info gauge and the log, when an arm's model changes."""
    if replaced is not None:  # the version it replaces no longer serves this arm
        MODEL.labels(model_version=replaced.version, arm=arm.name).set(0)
    if (predictor := arm.predictor) is None:
        if replaced is not None:
            log.info("the %s is off (no version: '%s' names none it may serve)", arm.name, arm.selector)
        return
    MODEL.labels(model_version=predictor.version, arm=arm.name).set(1)
    share = "" if arm.name == CHAMPION else f", {arm.fraction:.0%} of requests"
    log.info(
        "%s: %s version %s (%s%s)", arm.name, predictor.model_name, predictor.version, predictor.onnx_path.name, share
    )


def _packaged(tag: str) -> Predictor:
    """The model a bento serves, from BentoML's model store (labelled by `cvops package`)."""
    stored = bentoml.models.get(tag)
    labels = stored.info.labels
    projection = Path(stored.path_of(PROJECTION_FILE))
    model = ModelFiles(
        Path(stored.path_of(MODEL_FILE)),
        labels["registered_model"],
        labels["model_version"],
        labels["lineage_id"],
        projection if projection.is_file() else None,
    )
    return load(model, SETTINGS.max_batch_images, PARAMS.detect.served, SETTINGS.model_threads, SETTINGS.top_k)


for _service, _files, _feedback, _serves in (
    (Classifier, CLASSIFY, True, "classifier"),
    (Detector, DETECT, False, "detector"),
):
    _service.add_asgi_middleware(  # type: ignore[union-attr]
        RequestGuard,
        token=os.environ.get(API_TOKEN_ENV) or None,
        max_bytes=SETTINGS.max_request_bytes,
        files=_files,
        feedback=_feedback,
        serves=_serves,
    )
