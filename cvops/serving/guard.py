"""The request guard: whether a request may reach the service, and what it carries. An ASGI middleware that
answers a missing or wrong API token (401), another task's endpoint (404) and a body over the size limit (413)
itself, and parses an accepted body by its content type (a raw image, JSON base64, multipart) into the images
it hands the service instance's `answer` (or `record_feedback`); a body it cannot read reaches `answer` as its
RequestError (400, 413, 415), which answers, logs and counts it like any request.
"""

import base64
import binascii
import hmac
import json
import typing as t
import urllib.parse

import bentoml

from cvops.serving.predictor import RequestError
from cvops.serving.rollout import KEY_HEADER
from cvops.serving.settings import service_settings

OPEN_PATHS = {"/healthz", "/livez", "/readyz", "/metrics"}
FEEDBACK = "/feedback"
RAW_TYPES = ("image/", "application/octet-stream")  # a body that is the image file itself
RENDER = "render"  # POST /detect?render=1: the image sent, with its boxes drawn (PNG)
CLASSIFY = {"/classify": "image", "/classify_batch": "images"}  # a classifier's endpoints, to their file field
DETECT = {"/detect": "image", "/detect_batch": "images"}  # a detector's
ENDPOINTS = {*CLASSIFY, *DETECT, FEEDBACK}

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
    field) and /feedback. A body is read once (413 past serve.max_request_bytes), parsed once by its
    content type (a raw image, JSON, multipart; 415 for anything else) and handed to the service: BentoML's own
    parsing would parse multipart twice, write every upload to a temporary file, and answer a malformed body
    with a 500. The other task's endpoints get a 404 that names this service's."""

    def __init__(self, app: t.Any, files: dict[str, str], serves: str) -> None:
        settings = service_settings()  # built as the worker's app starts, not at import
        self.app, self.token, self.files = app, settings.api_token, files
        self.max_bytes, self.max_images = settings.serve.max_request_bytes, settings.serve.max_batch_images
        self.answered = {*files, FEEDBACK}
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
                scope, b"".join(chunks), content_type, field, takes_one_image(endpoint), self.max_images
            )
        except RequestError as err:
            images, drawn = err, False
        key = headers.get(KEY_HEADER.encode(), b"").decode("latin-1") or None
        status, body, request_id = await service.answer(endpoint, images, key, drawn)
        await _respond(send, status, body, request_id)


def takes_one_image(endpoint: str) -> bool:
    """Whether `endpoint` answers one image (/classify, /detect), not a batch."""
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


async def _images(
    scope: t.Any, body: bytes, content_type: str, field: str, single: bool, max_images: int
) -> list[bytes]:
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
    elif len(files) + len(texts) > max_images:
        raise RequestError(413, f"{len(files) + len(texts)} images: at most {max_images} per request")
    return files + [decode_base64(text) for text in texts]


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


def decode_base64(text: str) -> bytes:
    """Base64, or a data URI of it as browsers make them (data:image/png;base64,...)."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise RequestError(400, "a data URI must be base64: data:image/...;base64,...")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, "not valid base64") from err
