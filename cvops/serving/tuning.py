"""Tuning the service to its machine (`bench/serving.py --sweep`): the serve.* settings worth trying on these
cores, and the choice among them, as Triton's model analyzer makes it: the highest throughput whose p99 latency
meets a target at the load the service must take; none meeting it, the lowest p99, said so."""

from dataclasses import asdict, dataclass

WAITS_MS = (0.0, 2.0, 5.0)  # serve.batch_wait_ms tried
BATCHES = (8, 32)  # serve.max_batch_images tried


@dataclass(frozen=True)
class Setting:
    """One way to run the service: serve.workers processes, serve.threads runtime threads each, model calls of
    up to serve.max_batch_images images, each waiting up to serve.batch_wait_ms for a fuller batch."""

    workers: int
    threads: int
    max_batch_images: int
    batch_wait_ms: float

    @property
    def overrides(self) -> list[str]:
        """The setting as params overrides (`cvops serve -S`, `cvops params set`)."""
        return [f"serve.{key}={value:g}" for key, value in asdict(self).items()]


@dataclass(frozen=True)
class Trial:
    """A setting's measurement under load: requests answered per second, p99 latency, failed requests."""

    setting: Setting
    throughput_rps: float
    p99_ms: float
    errors: int

    def row(self) -> dict[str, float]:
        """The setting and its measurement, flat: a row of the sweep's table."""
        return {
            **asdict(self.setting),
            "throughput_rps": self.throughput_rps,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
        }


def settings(cores: int) -> list[Setting]:
    """The settings tried on `cores` cores: every count of workers, each with one runtime thread or the cores
    shared out, crossed with BATCHES and WAITS_MS."""
    tried = []
    for workers in range(1, cores + 1):
        for threads in sorted({1, max(1, cores // workers)}):
            tried += [Setting(workers, threads, batch, wait) for batch in BATCHES for wait in WAITS_MS]
    return tried


def ranked(trials: list[Trial], p99_ms: float) -> list[Trial]:
    """The trials with no failed request, best first: those with a p99 within `p99_ms` by throughput, then the
    others by p99."""
    clean = [trial for trial in trials if trial.errors == 0]
    within = sorted((t for t in clean if t.p99_ms <= p99_ms), key=lambda trial: -trial.throughput_rps)
    return within + sorted((t for t in clean if t.p99_ms > p99_ms), key=lambda trial: trial.p99_ms)


def choose(trials: list[Trial], p99_ms: float) -> tuple[Trial, str]:
    """The trial to run with, and why: the highest throughput among those with no failed request and a p99
    within `p99_ms`; when none is within, the lowest p99 of those with no failure."""
    if not (order := ranked(trials, p99_ms)):
        raise ValueError("every setting failed requests: see the servers' logs")
    best = order[0]
    if best.p99_ms <= p99_ms:
        return best, f"the highest throughput ({best.throughput_rps:.0f} requests/s) with p99 within {p99_ms:g} ms"
    return best, f"no setting kept p99 within {p99_ms:g} ms: the lowest p99 ({best.p99_ms:.1f} ms)"
