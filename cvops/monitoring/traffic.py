"""Demo traffic: images of a dataset split, optionally shifted, sent to the service or scored in-process
straight into the inference log, so a user can watch the monitoring loop react."""

import base64
import io
import itertools
import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cvops.data.prepare import DatasetRef, load_split
from cvops.errors import DataError
from cvops.monitoring.inference_log import InferenceLog
from cvops.monitoring.shifts import apply_shift
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
        return Counter(tqdm(pool.map(post, images), total=n, desc="traffic", unit="img", disable=None))


def log_offline(
    predictor: Predictor, images: Iterator[bytes], n: int, log: InferenceLog, max_pixels: int, batch_size: int = 64
) -> int:
    """Score the images in this process, exactly as the service does, and append them to the inference log."""
    size = predictor.preprocessing.image_size
    written = 0
    with tqdm(total=n, desc="traffic (offline)", unit="img", disable=None) as progress:
        while batch := [decode_image(data, size, max_pixels) for data in itertools.islice(images, batch_size)]:
            probabilities, embeddings = predictor.predict(np.stack([image.pixels for image in batch]))
            log.append(
                {"endpoint": "traffic", **predictor.log_row(image, p, e)}
                for image, p, e in zip(batch, probabilities, embeddings, strict=True)
            )
            written += len(batch)
            progress.update(len(batch))
    return written
