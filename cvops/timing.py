"""Latency measurements that a busy machine does not flip.

Load only ever adds time. So each candidate is timed in several rounds, the candidates taking turns within
every round (A B, then B A, ...), and its latency is the lowest round median: the round the machine was
least busy. The range of round medians is kept as the spread. A ratio of two candidates is the ratio of
their lowest round medians; its spread is the range of the per-round ratios, which a burst of load
touches on both sides at once.
"""

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import BaseModel, computed_field

ROUNDS = 5  # rounds per measurement: one or two rounds hit by a load burst still leave clean ones
WARMUP = 3  # untimed calls per candidate before the first round


class Latency(BaseModel):
    """Milliseconds per call in each round (the median of its runs)."""

    round_ms: list[float]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ms(self) -> float:
        """The estimate: the lowest round median."""
        return min(self.round_ms)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def high_ms(self) -> float:
        """The highest round median: ms to high_ms is the spread."""
        return max(self.round_ms)

    def describe(self) -> str:
        return f"{self.ms:.3g} ms (rounds up to {self.high_ms:.3g})"


def interleaved_latency(
    candidates: dict[str, Callable[[], object]],
    runs: int,
    rounds: int = ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Latency]:
    """Time every candidate `runs` times per round, the candidates taking turns, for `rounds` rounds."""
    names = list(candidates)
    for name in names:
        for _ in range(WARMUP):
            candidates[name]()
    medians: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            timings = []
            for _ in range(runs):
                start = clock()
                candidates[name]()
                timings.append((clock() - start) * 1000)
            medians[name].append(statistics.median(timings))
    return {name: Latency(round_ms=values) for name, values in medians.items()}


def ratio_range(slow: Latency, fast: Latency) -> tuple[float, float]:
    """Lowest and highest per-round ratio slow/fast (both measured in the same round)."""
    ratios = [s / f for s, f in zip(slow.round_ms, fast.round_ms, strict=True)]
    return min(ratios), max(ratios)


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
