"""What a served model does with bytes: validate and decode them, preprocess exactly as training did,
predict with the shipped ONNX file, and say which model version answered."""

import asyncio
import io
import warnings
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cvops.data.preprocess import (
    LEGACY_RESIZE,
    Decoder,
    Resize,
    model_inputs,
    oriented_size,
    reduce_while_decoding,
    resize_image,
)
from cvops.export.onnx_model import Session, output_names, predict_outputs, preprocessing_of, session
from cvops.serving.features import image_features
from cvops.serving.projection import Projection

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
MODEL_FILE = "model.onnx"  # a packaged model's ONNX file in BentoML's model store
SEND = f"send one of {', '.join(FORMATS)}"


class RequestError(Exception):
    """A request the service must refuse: `status` is the HTTP status (4xx), the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (size, size, 3) uint8, resized as in training
    width: int
    height: int
    features: dict[str, float]
    format: str = "PNG"  # the file's, as PIL names it
    resize: Resize = LEGACY_RESIZE  # the rule `pixels` were resized by


def decode_image(data: bytes, size: int, max_pixels: int, resize: Resize, decoder: Decoder) -> DecodedImage:
    """Validated bytes to an RGB image decoded by `decoder` and resized to `size` by rule `resize`, as the model's
    training data was (its Preprocessing says how); RequestError (400/413/415) for anything else.

    The pixel count is checked from the header before decoding, so a decompression bomb costs nothing.
    """
    if not data:
        raise RequestError(400, "empty image: send the image file's bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in FORMATS:
                    raise RequestError(
                        415, f"unsupported image format {image.format}: send one of {', '.join(FORMATS)}"
                    )
                if image.width * image.height > max_pixels:
                    raise RequestError(
                        413, f"image of {image.width}x{image.height} pixels is over the limit of {max_pixels} pixels"
                    )
                width, height, image_format = *oriented_size(image), image.format
                reduce_while_decoding(image, size, decoder)
                pixels = resize_image(image, size, resize)  # decodes: a truncated file fails here
    except RequestError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:  # PIL's own, lower guard
        raise RequestError(413, f"image over the limit of {max_pixels} pixels ({err})"[:300]) from err
    except UnidentifiedImageError as err:
        raise RequestError(400, f"not a readable image ({type(err).__name__}): {SEND}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise RequestError(400, f"corrupt image: {str(err)[:120]}") from err
    return DecodedImage(pixels, width, height, image_features(pixels), image_format, resize)


Outputs = tuple[np.ndarray, ...]  # arrays with one row per image


class MicroBatcher:
    """Adaptive batching: requests that arrive while the model is busy are merged into its next call.

    With no `wait` (seconds), a lone request runs at once; under load, batches grow up to `max_batch` images.
    With a wait, a call whose batch is not full waits up to that long for more requests (serve.batch_wait_ms):
    fuller batches for a little latency, which pays where a batch costs much less per image than one image.
    """

    def __init__(self, predict: Callable[[np.ndarray], Outputs], max_batch: int, wait: float = 0.0) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.wait = wait
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Outputs]]] | None = None

    async def submit(self, images: np.ndarray) -> Outputs:
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._run(self.queue))
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def _run(self, pending: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Outputs]]]) -> None:
        loop = asyncio.get_running_loop()
        carried: tuple[np.ndarray, asyncio.Future[Outputs]] | None = None  # the request that did not fit
        while True:
            batch = [carried or await pending.get()]
            carried = None
            size, closes = len(batch[0][0]), loop.time() + self.wait
            while size < self.max_batch:
                try:
                    item = pending.get_nowait()
                except asyncio.QueueEmpty:
                    if (left := closes - loop.time()) <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(pending.get(), left)
                    except TimeoutError:
                        break
                if size + len(item[0]) > self.max_batch:
                    carried = item
                    break
                batch.append(item)
                size += len(item[0])
            try:
                outputs = await asyncio.to_thread(self.predict, np.concatenate([images for images, _ in batch]))
            except Exception as err:  # the model failed: every waiting request learns why
                for _, future in batch:
                    future.set_exception(err)
                continue
            start = 0
            for images, future in batch:
                future.set_result(tuple(output[start : start + len(images)] for output in outputs))
                start += len(images)


Reply = tuple[dict[str, Any], dict[str, Any]]  # one image's answer (the JSON a client gets) and its log row


@dataclass
class Predictor:
    """One loaded classifier version: an onnxruntime session plus its preprocessing, identity and (when the
    version has a monitoring reference) the projection that reduces its embeddings for the inference log.

    `load` gets this or its detector twin (tasks.detection.predictor.DetectionPredictor) from the serve part of
    the task the ONNX file says (cvops/tasks/<task>/serve.py); both
    answer `predict` (a batch to raw outputs, one row per image, the projected embeddings last) and `reply`
    (one image's outputs to its answer and log row), which is all the service, batch inference and Ray use."""

    onnx_path: Path
    model_name: str
    version: str
    lineage_id: str
    max_batch: int
    threads: int | None = None
    projection_path: Path | None = None
    top_k: int = 1  # labels in an answer
    opened: InitVar[Session | None] = None  # a session of onnx_path open already
    batcher: MicroBatcher = field(init=False)

    def __post_init__(self, opened: Session | None) -> None:
        self.session = opened or session(self.onnx_path, self.threads)
        self.preprocessing = preprocessing_of(self.session, self.onnx_path)
        self.outputs = output_names(self.session)  # read once: not on every request
        self.projection = Projection.load(self.projection_path) if self.projection_path else None
        self.batcher = MicroBatcher(self.predict, self.max_batch)

    def reply(self, outputs: tuple[np.ndarray, ...], image: DecodedImage) -> Reply:
        """One image's row of `predict`'s outputs to its answer and its inference-log row."""
        probabilities, embedding = outputs
        return self.answer(probabilities), self.log_row(image, probabilities, embedding)

    def identity(self) -> dict[str, str]:
        """Which version answered: in every answer."""
        return {"model_name": self.model_name, "model_version": self.version, "lineage_id": self.lineage_id}

    def predict(self, pixels: np.ndarray) -> Outputs:
        """(N, size, size, 3) uint8 to (N, classes) probabilities and (N, dims) projected embeddings
        ((N, 0) without a projection)."""
        pre = self.preprocessing
        logits, embeddings = predict_outputs(self.session, model_inputs(pixels, pre.mean, pre.std), names=self.outputs)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        if self.projection is None or embeddings is None:
            projected = np.zeros((len(pixels), 0), dtype=np.float32)
        else:
            projected = self.projection.apply(embeddings)
        return exp / exp.sum(axis=1, keepdims=True), projected

    def answer(self, probabilities: np.ndarray) -> dict[str, Any]:
        order = np.argsort(-probabilities)[: self.top_k]
        names = self.preprocessing.class_names
        return {
            "predictions": [{"label": names[i], "score": round(float(probabilities[i]), 6)} for i in order],
            **self.identity(),
        }

    def log_row(self, image: DecodedImage, probabilities: np.ndarray, embedding: np.ndarray) -> dict[str, Any]:
        """What the inference log keeps of one prediction: monitoring's input."""
        best = int(probabilities.argmax())
        row: dict[str, Any] = {
            "model_version": self.version,
            "label": self.preprocessing.class_names[best],
            "score": round(float(probabilities[best]), 6),
            "width": image.width,
            "height": image.height,
            **image.features,
        }
        if embedding.size and self.projection is not None:
            row["embedding"] = [round(float(x), 5) for x in embedding]
            row["projection"] = self.projection.fingerprint
        return row
