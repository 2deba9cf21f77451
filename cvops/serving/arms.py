"""The arms a service answers with (serve.canary, serve.shadow): the champion answers every request the canary
does not take (its share, sticky per X-Request-Key); the shadow scores a share of the champion's requests
after they are answered, and its failures never reach an answer. Each arm serves the version its selector
names, followed in the registry and swapped in atomically when it changes (a bento serves its one packaged
model instead).
"""

import asyncio
import logging
import random
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import bentoml
import prometheus_client as prom

from cvops.errors import ModelError
from cvops.serving.answering import LATENCY, AnswerLog, decode_images, replies
from cvops.serving.loading import ModelFiles, load, load_served
from cvops.serving.predictor import MODEL_FILE, DecodedImage, Predictor
from cvops.serving.projection import PROJECTION_FILE
from cvops.serving.rollout import CANARY, CHAMPION, SHADOW, canary_version, takes_share
from cvops.serving.settings import ServiceSettings

log = logging.getLogger("cvops.serving")

MODEL = prom.Gauge(
    "cvops_model_info",
    "The version serving each arm (1 = current)",
    ["model_version", "arm"],
    multiprocess_mode="livemax",
)  # with several workers: 1 while any of them serves it
SHADOWED = prom.Counter("cvops_shadow_requests", "Requests the shadow scored, failed on or skipped", ["outcome"])
SHADOW_BACKLOG = 64  # requests the shadow may have in flight; past it, requests go unshadowed (counted as skipped)


@dataclass
class Arm:
    """A way a request can be served: the version a selector names, the share of requests it takes, its model
    (None while it has none: a canary no longer the challenger, a version that failed to load)."""

    name: str  # champion | canary | shadow
    selector: str  # an alias (followed) or a version number
    fraction: float
    predictor: Predictor | None = None
    failed: str | None = None  # a version that failed to load: tried again only once the selector moves on


class Arms:
    """A service's champion, canary and shadow, with their models of its `task`, loaded as it starts."""

    def __init__(self, task: str, settings: ServiceSettings, rng: random.Random) -> None:
        self.task, self.settings, self.rng = task, settings, rng
        serve = settings.serve
        self.champion = Arm(CHAMPION, settings.selector, 1.0)
        self.canary = Arm(CANARY, serve.canary.version, serve.canary.fraction) if serve.canary.version else None
        self.shadow = Arm(SHADOW, serve.shadow.version, serve.shadow.fraction) if serve.shadow.version else None
        if settings.packaged:
            self.champion.predictor = self._checked(packaged_predictor(settings.packaged, settings))
            announce(None, self.champion)
            if self.canary or self.shadow:
                log.warning("a bento serves its one packaged model: serve.canary and serve.shadow are ignored")
                self.canary = self.shadow = None
        else:
            for arm in self.arms:
                self._refresh(arm)

    @property
    def arms(self) -> list[Arm]:
        return [arm for arm in (self.champion, self.canary, self.shadow) if arm is not None]

    def follow_registry(self) -> None:
        """Poll the registry in a thread when an arm follows an alias, or is a canary (which stops answering
        once it is no longer the challenger)."""
        if not self.settings.packaged and any(arm.name == CANARY or not arm.selector.isdigit() for arm in self.arms):
            threading.Thread(target=self._follow, name="follow-registry", daemon=True).start()

    def route(self, key: str | None) -> Arm:
        """The arm that answers a request: the canary for its share (by `key` when sent), else the champion."""
        canary = self.canary
        if canary and canary.predictor and takes_share(canary.fraction, key, self.rng):
            return canary
        return self.champion

    def _served(self, arm: Arm) -> t.Any:
        """The version `arm` serves now, as a ServedModel (imports MLflow, which a bento does without)."""
        import mlflow

        from cvops.errors import RegistryError
        from cvops.registry.artifacts import resolve
        from cvops.registry.model_registry import ModelRegistry

        project = self.settings.project
        mlflow.set_tracking_uri(project.tracking_uri)
        registry = ModelRegistry.of(project, self.settings.params.registry.model_name)
        if arm.name == CANARY:
            info = canary_version(registry, arm.selector)
            return info and resolve(registry, info.version, project.onnx_cache)
        try:
            return resolve(registry, arm.selector, project.onnx_cache)
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
        serve = self.settings.serve
        threads = 1 if arm.name == SHADOW else serve.model_threads  # a shadow competes less for the CPU
        post = self.settings.params.detect.served
        try:
            loaded = served and self._checked(
                load_served(served, serve.max_batch_images, post, threads, serve.top_k, serve.runtime)
            )
        except Exception:
            if arm.name == CHAMPION:
                raise
            log.exception("could not load version %s as the %s: the %s is off", version, arm.name, arm.name)
            arm.failed, loaded = version, None
        arm.predictor = loaded  # one assignment: a request sees the old model or the new
        announce(current, arm)

    def _checked(self, predictor: Predictor) -> Predictor:
        """`predictor`, if it is a model of this service's task (a ModelError saying which service it needs), its
        batcher waiting serve.batch_wait_ms for a fuller batch."""
        if (task := predictor.preprocessing.task) != self.task:
            raise ModelError(
                f"{predictor.model_name} version {predictor.version} is a {task} model and this "
                f"service serves {self.task}: set task: {task} in params.yaml"
            )
        predictor.batcher.wait = self.settings.serve.batch_wait_ms / 1000
        return predictor

    def _follow(self) -> None:
        """Poll the registry: follow each alias, and switch the canary off once it is no longer the challenger.
        The champion comes last: a promoted canary has stopped answering as the canary once it answers as the
        champion."""
        while True:
            time.sleep(self.settings.serve.poll_seconds)
            for arm in reversed(self.arms):
                try:
                    self._refresh(arm)
                except Exception:  # keep serving the current model; the log says why
                    log.exception("could not follow '%s' for the %s", arm.selector, arm.name)


class ShadowScorer:
    """Scores the champion's requests with the shadow (its share of them) off the response path, and logs its
    rows beside the champion's under the same request ids."""

    def __init__(self, shadow: Arm | None, answer_log: AnswerLog, rng: random.Random, max_pixels: int) -> None:
        self.shadow, self.answer_log, self.rng, self.max_pixels = shadow, answer_log, rng, max_pixels
        self.scoring: set[asyncio.Task[None]] = set()  # in flight (a reference keeps each task alive)

    def score_aside(self, endpoint: str, raw: list[bytes], decoded: list[DecodedImage], ids: list[str]) -> None:
        """Start scoring an answered request, if the shadow takes it; past a backlog of SHADOW_BACKLOG requests,
        requests are skipped (counted): a slow shadow never holds answers or memory back."""
        shadow = self.shadow
        if shadow is None or shadow.predictor is None or not takes_share(shadow.fraction, rng=self.rng):
            return
        if len(self.scoring) >= SHADOW_BACKLOG:
            SHADOWED.labels(outcome="skipped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._score(endpoint, shadow, raw, decoded, ids))
        self.scoring.add(task)
        task.add_done_callback(self.scoring.discard)

    async def _score(
        self, endpoint: str, shadow: Arm, raw: list[bytes], decoded: list[DecodedImage], ids: list[str]
    ) -> None:
        predictor = shadow.predictor
        if predictor is None:
            return
        start = time.perf_counter()
        rows: list[dict[str, t.Any]] = [{"request_id": i} for i in ids]
        try:
            pre = predictor.preprocessing
            if (decoded[0].pixels.shape[0], decoded[0].resize) != (pre.image_size, pre.resize):  # its own input
                decoded = await asyncio.to_thread(decode_images, raw, predictor.preprocessing, self.max_pixels)
            rows = [row for _, row in await replies(predictor, decoded, ids)]
            status, outcome = 200, "scored"
        except Exception:
            log.warning("the shadow (version %s) failed on request %s", predictor.version, ids[0], exc_info=True)
            status, outcome = 500, "failed"
        seconds = time.perf_counter() - start
        SHADOWED.labels(outcome=outcome).inc()
        LATENCY.labels(endpoint=endpoint, arm=SHADOW).observe(seconds)
        self.answer_log.write(endpoint, SHADOW, predictor, rows, status, seconds)


def announce(replaced: Predictor | None, arm: Arm) -> None:
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


def packaged_predictor(tag: str, settings: ServiceSettings) -> Predictor:
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
    serve = settings.serve
    post = settings.params.detect.served
    return load(model, serve.max_batch_images, post, serve.model_threads, serve.top_k, serve.runtime)
