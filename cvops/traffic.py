"""Entry layer: demo traffic. Images of a dataset split, optionally shifted, sent to the service or scored
in-process straight into the inference log, so a user can watch the monitoring loop react."""

import base64
import io
import itertools
import json
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cvops.artifacts import resolve
from cvops.config import Params, Project
from cvops.console import progress
from cvops.data.prepare import DatasetRef, load_dataset_ref, load_split
from cvops.errors import DataError, ServiceUnavailable
from cvops.inference_log import InferenceLog
from cvops.monitoring.shifts import apply_shift
from cvops.registry import CHAMPION, ModelRegistry
from cvops.serving.predictor import Predictor, decode_image


def traffic_images(
    ref: DatasetRef, raw_dir: Path, split: str, shift: str, severity: float, n: int, seed: int
) -> Iterator[bytes]:
    """`n` PNG files drawn (seeded) from the original images of a split, each shifted."""
    _, _, manifest = load_split(ref, split)
    if manifest.empty:
        raise DataError(f"the {split} split is empty: run `cvops data prepare` (or `dvc repro`) first")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(manifest), size=n, replace=n > len(manifest))
    for index in chosen:
        path = raw_dir / str(manifest.loc[index, "path"])
        if not path.is_file():
            raise DataError(f"{path} is missing: restore the raw images with `dvc checkout` or `cvops data pull`")
        with Image.open(path) as image:
            shifted = apply_shift(image, shift, severity, rng)
        buffer = io.BytesIO()
        shifted.save(buffer, format="PNG")
        yield buffer.getvalue()


def send(url: str, images: Iterator[bytes], n: int, token: str | None = None, concurrency: int = 4) -> Counter[int]:
    """POST each image to the service's /classify; counts of HTTP statuses (0: no answer)."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})

    def post(data: bytes) -> int:
        body = json.dumps({"image_base64": base64.b64encode(data).decode()}).encode()
        request = urllib.request.Request(f"{url.rstrip('/')}/classify", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    with ThreadPoolExecutor(concurrency) as pool:
        return Counter(progress(pool.map(post, images), "traffic", total=n))


def log_offline(predictor: Predictor, images: Iterator[bytes], n: int, log: InferenceLog, max_pixels: int) -> int:
    """Score the images in this process, exactly as the service does, and append them to the inference log."""
    size = predictor.preprocessing.image_size
    written = 0
    with progress(None, "traffic (offline)", total=n) as bar:
        while batch := [decode_image(data, size, max_pixels) for data in itertools.islice(images, predictor.max_batch)]:
            probabilities, embeddings = predictor.predict(np.stack([image.pixels for image in batch]))
            log.append(
                {"endpoint": "traffic", **predictor.log_row(image, p, e)}
                for image, p, e in zip(batch, probabilities, embeddings, strict=True)
            )
            written += len(batch)
            bar.update(len(batch))
    return written


def send_traffic(
    project: Project, params: Params, split: str, shift: str, severity: float, count: int, seed: int | None,
    url: str | None, offline: bool,
) -> str:  # fmt: skip
    """`cvops traffic`: `count` shifted images to the service at `url` (default: serve.port on 127.0.0.1), or,
    `offline`, scored by the champion in this process into the inference log. Says what happened."""
    images = traffic_images(load_dataset_ref(project.prepared_dir), project.raw_dir, split, shift, severity, count,
                            params.base.seed if seed is None else seed)  # fmt: skip
    if offline:
        served = resolve(ModelRegistry.of(project, params.registry.model_name), CHAMPION, project.onnx_cache)
        inference_log = InferenceLog(project.inference_log(params.serve))
        predictor = Predictor.of(served, params.serve.max_batch_images)
        written = log_offline(predictor, images, count, inference_log, params.serve.max_image_pixels)
        inference_log.close()
        return f"{written} {shift} images scored by version {served.version} into the inference log"
    url = url or f"http://127.0.0.1:{params.serve.port}"
    statuses = send(url, images, count, token=os.environ.get("CVOPS_API_TOKEN"))
    if statuses.get(0) == count:
        raise ServiceUnavailable(f"no answer from {url}: start the service with `cvops serve`, or use --offline")
    summary = ", ".join(f"{n} x {status or 'no answer'}" for status, n in sorted(statuses.items()))
    return f"sent {count} {shift} images to {url}: {summary}"
