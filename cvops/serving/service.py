"""The BentoML service: POST /classify and /classify_batch, answered by the registry's champion (or a
pinned version), with Prometheus metrics, an optional API token and an inference log.

Started by `cvops serve`, which sets the environment this module reads:
  CVOPS_ROOT        the checkout (params.yaml: serve.*, the MLflow store, the inference log)
  CVOPS_SERVE_MODEL alias (champion) or version number; an alias is polled, and a new version is
                    swapped in atomically (requests in flight finish on the model they started with)
  CVOPS_BENTO_MODEL instead of the registry: a packaged model in BentoML's store (what a bento serves)
  CVOPS_API_TOKEN   when set, every request but the probes and /metrics needs `Authorization: Bearer <token>`

Built-in BentoML endpoints: GET /healthz, /livez, /readyz (200 once the model is loaded), /metrics.
"""

import base64
import binascii
import hmac
import json
import logging
import os
import threading
import time
import typing as t
from pathlib import Path

import bentoml
import numpy as np
import prometheus_client as prom

from cvops.config import Project
from cvops.inference_log import InferenceLog
from cvops.projection import PROJECTION_FILE
from cvops.serving.predictor import MODEL_FILE, DecodedImage, Predictor, RequestError, decode_image

log = logging.getLogger("cvops.serving")
PROJECT = Project.find()
PARAMS = PROJECT.params()
SETTINGS = PARAMS.serve
OPEN_PATHS = {"/healthz", "/livez", "/readyz", "/metrics"}
FILE_FIELDS = {"/classify": "image", "/classify_batch": "images"}
BODY_TYPES = ("application/json", "multipart/form-data")  # what BentoML parses well; others end in a 500

REQUESTS = prom.Counter("cvops_requests", "Requests by endpoint and HTTP status", ["endpoint", "status"])
LATENCY = prom.Histogram(
    "cvops_request_seconds", "Time to answer a request", ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)  # fmt: skip
PREDICTIONS = prom.Counter("cvops_predictions", "Predicted labels", ["label", "model_version"])
MODEL = prom.Gauge("cvops_model_info", "The model version answering requests (1 = current)", ["model_version"])


async def _json_error(send: t.Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware, before BentoML parses anything: the API token (401), the body size (413), a content
    type BentoML can parse (415), and a multipart body that parses, with one file where a file belongs and no
    field the endpoint does not define (400) — BentoML answers those with a 500."""

    def __init__(self, app: t.Any, token: str | None, max_bytes: int) -> None:
        self.app, self.token, self.max_bytes = app, token, max_bytes

    async def __call__(self, scope: t.Any, receive: t.Any, send: t.Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.token:
            given = headers.get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return await _json_error(send, 401, "missing or wrong API token: send 'Authorization: Bearer <token>'")
        if scope["method"] != "POST":
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
        body = b"".join(chunks)
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if scope["path"] in FILE_FIELDS:
            if body and not content_type.startswith(BODY_TYPES):
                field = FILE_FIELDS[scope["path"]]
                return await _json_error(
                    send,
                    415,
                    f"content type {content_type.split(';')[0] or 'none'}: send "
                    f"application/json ({field}_base64) or multipart/form-data (file '{field}')",
                )
            if content_type.startswith("multipart/form-data"):
                problem = await _multipart_problem(scope, body, FILE_FIELDS[scope["path"]])
                if problem:
                    return await _json_error(send, 400, problem)
        replayed = False

        async def replay() -> t.Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _multipart_problem(scope: t.Any, body: bytes, field: str) -> str | None:
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def once() -> t.Any:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception as err:  # starlette raises several types for a malformed body
        return f"malformed multipart body: {getattr(err, 'detail', err)}"
    try:
        if unknown := sorted(set(form.keys()) - {field, f"{field}_base64"}):
            return f"unknown field '{unknown[0]}': send the image as the file field '{field}'"
        files = form.getlist(field)
        if any(not isinstance(value, UploadFile) for value in files):
            return f"field '{field}' must be a file upload"
        if field == "image" and len(files) > 1:
            return f"{len(files)} files under 'image': send one (or several to /classify_batch)"
    finally:
        await form.close()
    return None


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


@bentoml.service(name=PARAMS.registry.bento_name, workers=1, traffic={"timeout": 60})
class Classifier:
    def __init__(self) -> None:
        self.packaged = os.environ.get("CVOPS_BENTO_MODEL")  # a bento: the model in BentoML's store, no registry
        self.selector = os.environ.get("CVOPS_SERVE_MODEL", "")  # else the registry's alias or version to serve
        self.predictor = self._load()
        self.inference_log = InferenceLog(PROJECT.inference_log(SETTINGS))
        if not self.packaged and not self.selector.isdigit():
            threading.Thread(target=self._follow_alias, name="follow-alias", daemon=True).start()

    def _load(self, served: t.Any = None) -> Predictor:
        if self.packaged:
            predictor = _packaged(self.packaged)
        else:
            predictor = Predictor.of(served or self._resolve(), SETTINGS.max_batch_images)
        if current := getattr(self, "predictor", None):  # the version it replaces is no longer current
            MODEL.labels(model_version=current.version).set(0)
        MODEL.labels(model_version=predictor.version).set(1)
        log.info("serving %s version %s (%s)", predictor.model_name, predictor.version, predictor.onnx_path.name)
        return predictor

    def _resolve(self) -> t.Any:
        """The version the selector names now (imports MLflow, which a bento does without)."""
        import mlflow

        from cvops.artifacts import resolve
        from cvops.registry import CHAMPION, ModelRegistry

        mlflow.set_tracking_uri(PROJECT.tracking_uri)
        registry = ModelRegistry.of(PROJECT, PARAMS.registry.model_name)
        return resolve(registry, self.selector or CHAMPION, PROJECT.onnx_cache)

    def _follow_alias(self) -> None:
        """Poll the registry; when the alias moves, load the new version and swap it in atomically."""
        while True:
            time.sleep(SETTINGS.poll_seconds)
            try:
                served = self._resolve()
                if served.version != self.predictor.version:
                    self.predictor = self._load(served)  # one assignment: requests see the old or the new
            except Exception:  # keep serving the current model; the log says why
                log.exception("could not follow '%s'; still serving version %s", self.selector, self.predictor.version)

    async def _predict(self, endpoint: str, ctx: bentoml.Context, raw: list[bytes]) -> list[dict[str, t.Any]]:
        predictor = self.predictor  # this request finishes on this model, even if a swap happens meanwhile
        size = predictor.preprocessing.image_size
        decoded: list[DecodedImage] = []
        for index, data in enumerate(raw):
            try:
                decoded.append(decode_image(data, size, SETTINGS.max_image_pixels))
            except RequestError as err:
                raise RequestError(err.status, f"image {index}: {err}" if len(raw) > 1 else str(err)) from err
        probabilities, embeddings = await predictor.batcher.submit(np.stack([image.pixels for image in decoded]))
        rows = [{"endpoint": endpoint, **predictor.log_row(image, p, e)}
                for image, p, e in zip(decoded, probabilities, embeddings, strict=True)]  # fmt: skip
        for row in rows:
            PREDICTIONS.labels(label=row["label"], model_version=predictor.version).inc()
        self.inference_log.append(rows)
        return [predictor.answer(p, SETTINGS.top_k) for p in probabilities]

    async def _answer(self, endpoint: str, ctx: bentoml.Context, collect: t.Callable[[], list[bytes]]) -> t.Any:
        start = time.perf_counter()
        try:
            answers = await self._predict(endpoint, ctx, collect())
            status, body = 200, (answers[0] if endpoint == "classify" else {"results": answers})
        except RequestError as err:
            status, body = err.status, {"error": str(err)}
        ctx.response.status_code = status
        REQUESTS.labels(endpoint=endpoint, status=str(status)).inc()
        LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - start)
        return body

    @bentoml.api
    async def classify(
        self,
        ctx: bentoml.Context,
        image: Path = None,  # type: ignore[assignment]  # noqa: RUF013 (BentoML rejects Optional[Path])
        image_base64: str | None = None,
    ) -> dict[str, t.Any]:
        """One image: multipart file field `image`, or JSON {"image_base64": "..."}. Top-k labels with scores."""

        def collect() -> list[bytes]:
            if (image is None) == (image_base64 is None):
                raise RequestError(400, "send exactly one of: multipart file 'image', JSON 'image_base64'")
            return [image.read_bytes() if image is not None else _b64(image_base64 or "")]

        return await self._answer("classify", ctx, collect)

    @bentoml.api
    async def classify_batch(
        self,
        ctx: bentoml.Context,
        images: list[Path] = None,  # type: ignore[assignment]  # noqa: RUF013
        images_base64: list[str] | None = None,
    ) -> dict[str, t.Any]:
        """Several images: repeated multipart file field `images`, or JSON {"images_base64": [...]}."""

        def collect() -> list[bytes]:
            if not images and not images_base64:
                raise RequestError(400, "send images: repeated multipart file 'images', or JSON 'images_base64'")
            count = len(images or images_base64 or [])
            if count > SETTINGS.max_batch_images:
                raise RequestError(413, f"{count} images: at most {SETTINGS.max_batch_images} per request")
            return [p.read_bytes() for p in images] if images else [_b64(text) for text in images_base64 or []]

        return await self._answer("classify_batch", ctx, collect)


def _packaged(tag: str) -> Predictor:
    """The model a bento serves, from BentoML's model store (labelled by `cvops package`)."""
    stored = bentoml.models.get(tag)
    labels = stored.info.labels
    projection = Path(stored.path_of(PROJECTION_FILE))
    return Predictor(Path(stored.path_of(MODEL_FILE)), labels["registered_model"], labels["model_version"],
                     labels["lineage_id"], SETTINGS.max_batch_images,
                     projection_path=projection if projection.is_file() else None)  # fmt: skip


Classifier.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard, token=os.environ.get("CVOPS_API_TOKEN") or None,
                               max_bytes=SETTINGS.max_request_bytes)  # fmt: skip
