"""What every arm's answer goes through: the request's images decoded for its model, the model's replies, the
images kept for labelling, the inference-log rows and the request metrics."""

import asyncio
import logging
import random
import typing as t
from concurrent.futures import Future

import numpy as np
import prometheus_client as prom

from cvops.config import CaptureParams
from cvops.export.onnx_model import Preprocessing
from cvops.serving.capture import CAPTURE, CaptureStore
from cvops.serving.inference_log import InferenceLog, LogTarget
from cvops.serving.predictor import DecodedImage, Predictor, Reply, RequestError, decode_image

log = logging.getLogger("cvops.serving")

REQUESTS = prom.Counter("cvops_requests", "Requests by endpoint, HTTP status and arm", ["endpoint", "status", "arm"])
LATENCY = prom.Histogram(
    "cvops_request_seconds",
    "Time to answer a request (the shadow's arm: to score it aside)",
    ["endpoint", "arm"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
INLINE_DECODE_BYTES = 256 * 1024  # a request up to this size is decoded on the event loop (see decode_request)
PREDICTIONS = prom.Counter(
    "cvops_predictions", "Predicted labels (a detector's: one per box)", ["label", "model_version", "arm"]
)


def decode_images(raw: list[bytes], preprocessing: Preprocessing, max_pixels: int) -> list[DecodedImage]:
    """The request's images, validated and resized for a model's input; RequestError names the bad one."""
    decoded = []
    for index, data in enumerate(raw):
        try:
            decoded.append(
                decode_image(data, preprocessing.image_size, max_pixels, preprocessing.resize, preprocessing.decoder)
            )
        except RequestError as err:
            raise RequestError(err.status, f"image {index}: {err}" if len(raw) > 1 else str(err)) from err
    return decoded


async def decode_request(raw: list[bytes], preprocessing: Preprocessing, max_pixels: int) -> list[DecodedImage]:
    """`decode_images`, in a thread for a large request: a photo's decode (tens of ms) on the event loop would hold
    every other request of the worker. A small one (a 300-pixel PNG, a millisecond) is decoded on the loop, where
    the thread's hop would cost more than it frees (measured with bench/serving.py: 12-megapixel photos at 8
    connections x1.6 faster in a thread; small PNGs at 1 connection slower)."""
    if sum(len(data) for data in raw) > INLINE_DECODE_BYTES:
        return await asyncio.to_thread(decode_images, raw, preprocessing, max_pixels)
    return decode_images(raw, preprocessing, max_pixels)


async def replies(predictor: Predictor, decoded: list[DecodedImage], ids: list[str]) -> list[Reply]:
    """The images' answers and log rows (each row with its request id), the model run through the batcher."""
    outputs = await predictor.batcher.submit(np.stack([image.pixels for image in decoded]))
    answered = [predictor.reply(tuple(output[k] for output in outputs), image) for k, image in enumerate(decoded)]
    return [(answer, {"request_id": i, **row}) for (answer, row), i in zip(answered, ids, strict=True)]


async def capture_chosen(
    store: CaptureStore,
    capture: CaptureParams,
    rng: random.Random,
    raw: list[bytes],
    decoded: list[DecodedImage],
    rows: list[dict[str, t.Any]],
) -> None:
    """Keep the images `capture` selects (a random share, and the unsure ones), and name each one's key in its
    log row; an image that could not be stored is logged, and its row names no capture."""
    chosen = [i for i, row in enumerate(rows) if capture.wants(row["score"], rng.random())]
    writes = (asyncio.to_thread(store.keep, rows[i]["request_id"], decoded[i].format, raw[i]) for i in chosen)
    stored = await asyncio.gather(*writes, return_exceptions=True)
    for i, outcome in zip(chosen, stored, strict=True):
        if isinstance(outcome, BaseException):
            log.error("could not capture request %s to %s: %s", rows[i]["request_id"], store.location, outcome)
        else:
            rows[i][CAPTURE] = outcome


class AnswerLog:
    """The inference log, written one row per image (one per request when it failed), with the predictions
    metric."""

    def __init__(self, location: LogTarget) -> None:
        self.inference_log = InferenceLog(location)

    def write(
        self, endpoint: str, arm: str, predictor: Predictor, rows: list[dict[str, t.Any]], status: int, seconds: float
    ) -> "Future[None]":
        """The rows, naming the arm and version; the future is done once they are written."""
        stamp = {
            "endpoint": endpoint,
            "arm": arm,
            "model_version": predictor.version,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        for row in rows:  # a classifier's label; each of a detector's boxes
            for label in row.get("labels", [row["label"]] if "label" in row else []):
                PREDICTIONS.labels(label=label, model_version=predictor.version, arm=arm).inc()
        return self.inference_log.append({**stamp, **row} for row in rows)
