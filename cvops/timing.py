"""Latency measurements that a busy machine does not flip.

Candidates are timed call by call, taking turns (A B, then B A, ...), so that every call of one has a
call of the other right beside it, under the same load. A candidate's latency is the median of its calls;
a ratio of two candidates is the median of the ratios of their paired calls, which a burst of load
touches on both sides at once. The 10th and 90th percentiles are kept as the spread. bench/latency.py
measures how much steadier this is, under load, than timing one file after the other.
"""

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
from pydantic import BaseModel

WARMUP = 3  # untimed calls per candidate first
K = TypeVar("K", bound=str)  # what names a candidate


class Spread(BaseModel):
    """A median with its 10th and 90th percentiles."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        low, high = np.percentile(values, [10, 90])
        return cls(median=statistics.median(values), low=float(low), high=float(high))


def interleaved_calls(
    candidates: dict[K, Callable[[], object]], runs: int, clock: Callable[[], float] = time.perf_counter
) -> dict[K, list[float]]:
    """Milliseconds of `runs` calls of every candidate, the candidates taking turns (the order reversed every
    turn); call i of one candidate ran right beside call i of the others."""
    names = list(candidates)
    for name in names:
        for _ in range(WARMUP):
            candidates[name]()
    calls: dict[K, list[float]] = {name: [] for name in names}
    for turn in range(runs):
        for name in names if turn % 2 == 0 else reversed(names):
            start = clock()
            candidates[name]()
            calls[name].append((clock() - start) * 1000)
    return calls


def latency(calls: list[float]) -> Spread:
    """A candidate's latency in ms: the median of its calls, with the spread."""
    return Spread.of(calls)


def ratio(slow: list[float], fast: list[float]) -> Spread:
    """How many times slower `slow` is than `fast`: the median of the paired calls' ratios, with the spread."""
    return Spread.of([s / f for s, f in zip(slow, fast, strict=True)])


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch on `threads` threads, then restore the previous setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
