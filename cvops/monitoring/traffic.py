"""Entry layer: demo traffic. Images of a dataset split, optionally shifted, sent to the service or scored
in-process straight into the inference log, so a user can watch the monitoring loop react."""

import base64
import csv
import io
import itertools
import json
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvops.config import HOLDOUT, Params, Project, ServeParams
from cvops.console import progress
from cvops.data.prepare import DatasetRef, load_dataset_ref, load_split
from cvops.env import API_TOKEN_ENV
from cvops.errors import ConfigError, DataError, ServiceUnavailable
from cvops.monitoring.shifts import apply_shift
from cvops.registry.artifacts import resolve
from cvops.registry.model_registry import CHAMPION, ModelRegistry
from cvops.serving.capture import CAPTURE, CaptureStore
from cvops.serving.feedback import give_feedback, new_request_id
from cvops.serving.inference_log import InferenceLog
from cvops.serving.loading import load_served
from cvops.serving.predictor import Predictor, decode_image
from cvops.tasks import task

Sent = tuple[int, str | None, str]  # (HTTP status (0: no answer), the answer's request_id, the true label)


def traffic_images(
    ref: DatasetRef, raw_dir: Path, split: str, shift: str, severity: float, n: int, seed: int
) -> Iterator[tuple[bytes, str]]:
    """`n` PNG files drawn (seeded) from the original images of a split, each shifted, with its true label."""
    _, _, manifest = load_split(ref, split)
    if manifest.empty:
        hint = " (prepare.holdout_fraction is 0)" if split == HOLDOUT else ""
        raise DataError(f"the {split} split is empty{hint}: run `cvops data prepare` (or `dvc repro`) first")
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
        yield buffer.getvalue(), str(manifest.loc[index, "label"])


def _post(url: str, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    """POST JSON; (HTTP status, the JSON answer), status 0 when no answer came."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, {}
    except (OSError, ValueError):
        return 0, {}


def send(
    url: str, images: Iterator[tuple[bytes, str]], n: int, token: str | None = None, concurrency: int = 4
) -> list[Sent]:
    """POST each image to the service's /classify, in order."""

    def post(item: tuple[bytes, str]) -> Sent:
        status, answer = _post(
            f"{url.rstrip('/')}/classify", {"image_base64": base64.b64encode(item[0]).decode()}, token
        )
        return status, answer.get("request_id"), item[1]

    with ThreadPoolExecutor(concurrency) as pool:
        return list(progress(pool.map(post, images), "traffic", total=n))


def send_feedback(url: str, labels: dict[str, str], token: str | None = None) -> Counter[int]:
    """POST each true label to the service's /feedback; counts of HTTP statuses."""
    with ThreadPoolExecutor(4) as pool:
        return Counter(
            pool.map(
                lambda item: _post(f"{url.rstrip('/')}/feedback", {"request_id": item[0], "label": item[1]}, token)[0],
                labels.items(),
            )
        )


def log_offline(
    predictor: Predictor,
    images: Iterator[tuple[bytes, str]],
    n: int,
    log: InferenceLog,
    serve: ServeParams,
    capture: CaptureStore | None = None,
    seed: int = 0,
) -> list[Sent]:
    """Score the images in this process, exactly as the service does (capture included, into `capture`), and
    append them to the inference log."""
    pre, rng = predictor.preprocessing, np.random.default_rng(seed)
    sent: list[Sent] = []
    with progress(None, "traffic (offline)", total=n) as bar:
        while batch := list(itertools.islice(images, predictor.max_batch)):
            decoded = [
                decode_image(data, pre.image_size, serve.max_image_pixels, pre.resize, pre.decoder) for data, _ in batch
            ]
            probabilities, embeddings = predictor.predict(np.stack([image.pixels for image in decoded]))
            ids = [new_request_id() for _ in batch]
            rows = [
                {"endpoint": "traffic", "request_id": i, **predictor.log_row(image, p, e)}
                for i, image, p, e in zip(ids, decoded, probabilities, embeddings, strict=True)
            ]
            for row, image, (data, _) in zip(rows, decoded, batch, strict=True):
                if capture is not None and serve.capture.wants(row["score"], rng.random()):
                    row[CAPTURE] = capture.keep(row["request_id"], image.format, data)
            log.append(rows)
            sent += [(200, i, label) for i, (_, label) in zip(ids, batch, strict=True)]
            bar.update(len(batch))
    return sent


def write_truth(sent: list[Sent], path: Path) -> None:
    """request_id,label of every answered request: the ground truth a simulation labels from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["request_id", "label"])
        writer.writerows((request_id, label) for status, request_id, label in sent if status == 200 and request_id)
    os.replace(partial, path)


def feedback_share(sent: list[Sent], fraction: float, seed: int) -> dict[str, str]:
    """A seeded `fraction` of the answered requests, with their true labels."""
    answered = [(request_id, label) for status, request_id, label in sent if status == 200 and request_id]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(answered), size=round(len(answered) * fraction), replace=False))
    return dict(answered[i] for i in chosen)


@dataclass(frozen=True, kw_only=True)
class TrafficPlan:
    """What `cvops traffic` sends: which images, shifted how, to the service at `url` (default: serve.port on
    127.0.0.1) or, `offline`, scored by the champion in this process; then the true labels of a `feedback` share
    of them, and of all of them to `truth_out`."""

    split: str
    shift: str
    severity: float
    count: int
    seed: int | None  # of the image draw, the noise and the feedback share (default: base.seed)
    url: str | None
    offline: bool
    feedback: float = 0.0
    truth_out: Path | None = None


def send_traffic(project: Project, params: Params, plan: TrafficPlan) -> str:
    """`cvops traffic`: `count` shifted images to the service, or offline into the inference log, then their
    true labels, as `plan` says. Says what happened."""
    if not task(params.task).traffic:
        raise ConfigError(
            f"cvops traffic simulates a classifier's clients and their true labels: for a {params.task} model, "
            "score images with `cvops run batch-inference` or POST them to the service"
        )
    seed = params.base.seed if plan.seed is None else plan.seed
    images = traffic_images(
        load_dataset_ref(project.prepared_dir), project.raw_dir, plan.split, plan.shift, plan.severity, plan.count, seed
    )
    token = os.environ.get(API_TOKEN_ENV)
    if plan.offline:
        served = resolve(ModelRegistry.of(project, params.registry.model_name), CHAMPION, project.onnx_cache)
        inference_log = InferenceLog(project.inference_log(params.serve))
        predictor = load_served(served, params.serve.max_batch_images, params.detect.served)
        store = CaptureStore(project.capture_store(params.serve)) if params.serve.capture.enabled else None
        sent = log_offline(predictor, images, plan.count, inference_log, params.serve, store, seed)
        inference_log.close()
        summary = f"{len(sent)} {plan.shift} images scored by version {served.version} into the inference log"
    else:
        url = plan.url or f"http://127.0.0.1:{params.serve.port}"
        sent = send(url, images, plan.count, token)
        statuses = Counter(status for status, _, _ in sent)
        if statuses.get(0) == plan.count:
            raise ServiceUnavailable(f"no answer from {url}: start the service with `cvops serve`, or use --offline")
        answers = ", ".join(f"{n} x {status or 'no answer'}" for status, n in sorted(statuses.items()))
        summary = f"sent {plan.count} {plan.shift} images to {url}: {answers}"
    if plan.truth_out is not None:
        write_truth(sent, plan.truth_out)
        summary += f"; true labels in {plan.truth_out}"
    if plan.feedback:
        labels = feedback_share(sent, plan.feedback, seed)
        if plan.offline:
            give_feedback(project.inference_log(params.serve), labels, predictor.preprocessing.class_names, "traffic")
            summary += f"; feedback for {len(labels)}"
        else:
            given = send_feedback(url, labels, token)
            summary += "; feedback " + ", ".join(f"{n} x {code or 'no answer'}" for code, n in sorted(given.items()))
    return summary
