"""The BentoML services: a classifier's POST /classify, /classify_batch and /feedback, a detector's POST
/detect (?render=1: the image with its boxes drawn), /detect_batch and /feedback (true boxes), answered by the
registry's champion (or a pinned version), with Prometheus metrics, an optional API token and an inference log.
`cvops serve` starts the one of the checkout's task (its `service` in cvops/tasks), with the environment
settings.py names.

Rollout (serve.canary, serve.shadow; arms.py): a canary, the challenger, answers a share of the requests
(sticky per X-Request-Key); a shadow scores a share of the champion's requests after they are answered. Every
answer names its version, arm and request_id; the log and the metrics carry the arm. Requests reach `answer`
through the request guard (guard.py).

Built-in BentoML endpoints: GET /healthz, /livez, /readyz (200 once the model is loaded), /metrics.
"""

import asyncio
import json
import logging
import random
import time
import typing as t
from pathlib import Path

import bentoml

from cvops.errors import FeedbackError
from cvops.serving.answering import LATENCY, REQUESTS, AnswerLog, capture_chosen, decode_request, replies
from cvops.serving.arms import Arms, ShadowScorer
from cvops.serving.capture import CaptureStore
from cvops.serving.feedback import (
    BOX_FORMAT,
    UnknownRequest,
    check_request_id,
    give_box_feedback,
    give_feedback,
    new_request_id,
)
from cvops.serving.guard import CLASSIFY, DETECT, Body, RequestGuard, decode_base64, takes_one_image
from cvops.serving.predictor import DecodedImage, RequestError
from cvops.serving.settings import service_options, service_settings
from cvops.tasks.detection.predictor import render

log = logging.getLogger("cvops.serving")


class Vision:
    """What the classifier's and the detector's services share: answering a request with one of the arms
    (champion, canary, shadow), capture and the inference log. A subclass names its task and endpoints."""

    TASK: t.ClassVar[str]
    FEEDBACK: t.ClassVar[str]  # the field of POST /feedback that holds the true answer
    EXAMPLE: t.ClassVar[str]  # that field, as an error shows it

    def __init__(self) -> None:
        log.setLevel(logging.INFO)  # BentoML's root logger stops at WARNING; which version serves is worth a line
        self.settings = settings = service_settings()
        self.rng = random.Random()
        self.arms = Arms(self.TASK, settings, self.rng)
        self.answer_log = AnswerLog(settings.project.inference_log(settings.serve))
        capture = settings.serve.capture.enabled
        self.captures = CaptureStore(settings.project.capture_store(settings.serve)) if capture else None
        self.shadow_scorer = ShadowScorer(self.arms.shadow, self.answer_log, self.rng, settings.serve.max_image_pixels)
        self.arms.follow_registry()

    async def answer(
        self, endpoint: str, images: list[bytes] | RequestError, key: str | None, drawn: bool = False
    ) -> tuple[int, Body, str]:
        """Answer a request for `images` (or the error its body had): (HTTP status, body, request id); the body
        is the JSON answer, or with `drawn` the image with its detections drawn (PNG)."""
        start = time.perf_counter()
        request_id = new_request_id()
        arm = self.arms.route(key)
        predictor = arm.predictor  # this request finishes on this model, even if a swap happens meanwhile
        assert predictor is not None  # the champion always has one; a canary without one is never routed to
        rows: list[dict[str, t.Any]] = []
        decoded: list[DecodedImage] = []
        body: Body
        try:
            if isinstance(images, RequestError):
                raise images
            decoded = await decode_request(images, predictor.preprocessing, self.settings.serve.max_image_pixels)
            single = takes_one_image(endpoint)
            ids = [request_id] if single else [f"{request_id}-{i}" for i in range(len(decoded))]
            replied = await replies(predictor, decoded, ids)
            answers = [{**answer, "request_id": row["request_id"], "arm": arm.name} for answer, row in replied]
            rows = [row for _, row in replied]
            status, body = 200, (answers[0] if single else {"results": answers})
            if drawn:
                body = await asyncio.to_thread(render, images[0], answers[0]["detections"])
        except RequestError as err:
            status, body = err.status, {"error": str(err)}
        except Exception as err:  # the model failed: the client learns which version, the log why
            log.exception("version %s (%s) failed", predictor.version, arm.name)
            status, body = 500, {"error": f"model version {predictor.version} failed: {type(err).__name__}"}
        if rows and self.captures is not None:
            raw = t.cast(list[bytes], images)  # rows: the images were read
            await capture_chosen(self.captures, self.settings.serve.capture, self.rng, raw, decoded, rows)
        seconds = time.perf_counter() - start
        REQUESTS.labels(endpoint=endpoint, status=str(status), arm=arm.name).inc()
        LATENCY.labels(endpoint=endpoint, arm=arm.name).observe(seconds)
        # in the log before the answer goes out: feedback sent on receiving it always finds its request
        await asyncio.wrap_future(
            self.answer_log.write(endpoint, arm.name, predictor, rows or [{"request_id": request_id}], status, seconds)
        )
        if status == 200 and arm is self.arms.champion and not isinstance(images, RequestError):
            self.shadow_scorer.score_aside(endpoint, images, decoded, [row["request_id"] for row in rows])
        return status, body, request_id

    async def record_feedback(self, body: bytes) -> tuple[int, dict[str, t.Any]]:
        """POST /feedback {"request_id": ..., FEEDBACK: ...}: record the true answer of an answer (a repeat
        replaces it). 404 for an id no answer has, 400 for a label the model does not know or a bad box."""
        field = self.FEEDBACK
        try:
            payload = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError) as err:
            return 400, {"error": f"not valid JSON: {str(err)[:120]}"}
        if not isinstance(payload, dict) or not {"request_id", field} <= set(payload):
            return 400, {"error": f'send a JSON object {{"request_id": "<the answer\'s request_id>", {self.EXAMPLE}}}'}
        if unknown := sorted(set(payload) - {"request_id", field}):
            return 400, {"error": f"unknown field '{unknown[0]}': send request_id and {field}"}
        predictor = self.arms.champion.predictor
        assert predictor is not None
        request_id, truth = payload["request_id"], payload[field]
        give = give_feedback if field == "label" else give_box_feedback
        try:
            check_request_id(request_id)
            await asyncio.to_thread(
                give,
                self.settings.project.inference_log(self.settings.serve),
                {request_id: truth},
                predictor.preprocessing.class_names,
                "api",
            )
        except UnknownRequest as err:
            return 404, {"error": str(err)}
        except FeedbackError as err:
            return 400, {"error": str(err)}
        return 200, {"request_id": request_id, field: truth, "recorded": True}

    async def _typed(self, ctx: bentoml.Context, endpoint: str, images: list[bytes]) -> t.Any:
        problem = not images or (takes_one_image(endpoint) and len(images) > 1)
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
        images = [image.read_bytes()] if image is not None else [decode_base64(image_base64)] if image_base64 else []
        return await self._typed(ctx, endpoint, images)

    async def batch(
        self: Vision,
        ctx: bentoml.Context,
        images: list[Path] = None,  # type: ignore[assignment]  # noqa: RUF013
        images_base64: list[str] | None = None,
    ) -> dict[str, t.Any]:
        files = [path.read_bytes() for path in images or []] + [decode_base64(text) for text in images_base64 or []]
        return await self._typed(ctx, f"{endpoint}_batch", files)

    one.__name__, one.__qualname__, one.__doc__ = endpoint, endpoint, one_doc
    batch.__name__, batch.__qualname__, batch.__doc__ = f"{endpoint}_batch", f"{endpoint}_batch", batch_doc
    return bentoml.api(one), bentoml.api(batch)


# BentoML takes a service's options (name, workers) where its class is defined: the only settings read at import
@bentoml.service(**service_options())
class Classifier(Vision):
    """POST /classify, /classify_batch and /feedback (task: classification)."""

    TASK, FEEDBACK, EXAMPLE = "classification", "label", '"label": "<a class>"'

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


@bentoml.service(**service_options())  # as Classifier's
class Detector(Vision):
    """POST /detect (?render=1), /detect_batch and /feedback (task: detection)."""

    TASK, FEEDBACK, EXAMPLE = "detection", "boxes", f'"boxes": [{BOX_FORMAT}, ...]'

    detect, detect_batch = _image_endpoints(
        "detect",
        """One image, sent as to /classify. Its detections ({"box": [x1, y1, x2, y2] in the pixels of the image
        sent, "label", "score"}, best first), the version, arm and request_id. Over HTTP, POST /detect?render=1
        returns the image with its boxes drawn (PNG).""",
        """Several images, sent as to /classify_batch: {"results": [one /detect answer per image]}.""",
    )

    @bentoml.api
    async def feedback(self, ctx: bentoml.Context, request_id: str, boxes: list[dict[str, t.Any]]) -> dict[str, t.Any]:
        """The true boxes of an answer: {"request_id": "<the answer's request_id>", "boxes": [{"box": [x1, y1, x2,
        y2], "label": "<a class>"}, ...]} in the pixels of the image sent ([]: no object). An unknown request_id is
        404, a bad box or label 400; sending it again replaces the boxes."""
        status, body = await self.record_feedback(json.dumps({"request_id": request_id, "boxes": boxes}).encode())
        ctx.response.status_code = status
        return body


for _service, _files, _serves in ((Classifier, CLASSIFY, "classifier"), (Detector, DETECT, "detector")):
    _service.add_asgi_middleware(RequestGuard, files=_files, serves=_serves)  # type: ignore[union-attr]
