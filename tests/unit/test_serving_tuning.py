"""The service's adaptive batcher (serve.batch_wait_ms) and the tuner's choice of serve.* settings."""

import asyncio
import threading

import numpy as np
import pytest

from cvops.config import ServeParams
from cvops.serving.predictor import MicroBatcher
from cvops.serving.tuning import Setting, Trial, choose, settings


class Model:
    """A model that records the batch size of each call; a call can be held until released."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.release.set()

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        self.calls.append(len(images))
        self.started.set()
        self.release.wait(timeout=30)
        return (images.sum(axis=(1, 2, 3)),)


def image(value: int, count: int = 1) -> np.ndarray:
    return np.full((count, 2, 2, 3), value, dtype=np.uint8)


def test_without_a_wait_a_lone_request_runs_at_once_and_arrivals_join_the_next_call():
    async def scenario() -> list[int]:
        model = Model()
        model.release.clear()
        batcher = MicroBatcher(model, max_batch=8)
        first = asyncio.ensure_future(batcher.submit(image(1)))
        await asyncio.to_thread(model.started.wait, 30)  # the first request's call began alone
        later = [asyncio.ensure_future(batcher.submit(image(v))) for v in (2, 3)]
        while batcher.queue is None or batcher.queue.qsize() < 2:  # both queued while the model is busy
            await asyncio.sleep(0)
        model.release.set()
        answers = await asyncio.gather(first, *later)
        assert [float(a[0][0]) for a in answers] == [12.0, 24.0, 36.0]  # each request gets its own rows
        return model.calls

    assert asyncio.run(scenario()) == [1, 2]


def test_with_a_wait_requests_fill_one_call_that_starts_once_full():
    async def scenario() -> list[int]:
        model = Model()
        batcher = MicroBatcher(model, max_batch=4, wait=60.0)  # a full batch need not wait the minute
        answers = await asyncio.wait_for(asyncio.gather(*(batcher.submit(image(v, 2)) for v in (1, 2))), timeout=30)
        assert [a[0].tolist() for a in answers] == [[12.0, 12.0], [24.0, 24.0]]
        return model.calls

    assert asyncio.run(scenario()) == [4]


def test_a_lone_request_is_answered_once_the_wait_is_over():
    async def scenario() -> list[int]:
        model = Model()
        batcher = MicroBatcher(model, max_batch=8, wait=0.01)
        await asyncio.wait_for(batcher.submit(image(1)), timeout=30)
        return model.calls

    assert asyncio.run(scenario()) == [1]


def test_serve_threads_sets_the_runtime_threads_and_auto_shares_the_cores():
    assert ServeParams(workers=2, threads=3).model_threads == 3
    assert ServeParams(workers=1).model_threads is None  # every core


def test_the_settings_cover_every_worker_count_with_one_thread_or_the_cores_shared():
    tried = settings(cores=2)
    assert {(s.workers, s.threads) for s in tried} == {(1, 1), (1, 2), (2, 1)}
    assert len(tried) == len(set(tried)) == 3 * 2 * 3  # with each batch size and wait
    assert Setting(2, 1, 32, 2.0).overrides == [
        "serve.workers=2",
        "serve.threads=1",
        "serve.max_batch_images=32",
        "serve.batch_wait_ms=2",
    ]


def trial(workers: int, rps: float, p99: float, errors: int = 0) -> Trial:
    return Trial(Setting(workers, 1, 32, 0.0), rps, p99, errors)


def test_the_choice_is_the_highest_throughput_within_the_p99_target_without_errors():
    trials = [trial(1, 400, 40), trial(2, 600, 90), trial(3, 900, 150), trial(4, 950, 20, errors=3)]
    best, why = choose(trials, p99_ms=100)
    assert best.setting.workers == 2 and "highest throughput (600 requests/s) with p99 within 100 ms" in why


def test_with_no_setting_within_the_target_the_lowest_p99_is_chosen_and_said():
    best, why = choose([trial(1, 400, 140), trial(2, 600, 120)], p99_ms=100)
    assert best.setting.workers == 2 and why.startswith("no setting kept p99 within 100 ms")
    with pytest.raises(ValueError, match="every setting failed"):
        choose([trial(1, 400, 40, errors=1)], p99_ms=100)
