"""The Ray engine (`distributed.engine: ray`): a Ray session for one command, on a local instance or a cluster.

Ray is imported inside functions only, here and where work runs on Ray (serving/on_ray.py), and only when the
engine is ray: the embedded default starts no Ray process.
"""

import logging
import math
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cvops.config import DistributedParams
from cvops.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0


@contextmanager
def ray_session(distributed: DistributedParams, cpus: float, sized_by: str) -> Iterator[None]:
    """Connected to `distributed.address` for the duration of the block; null: a Ray instance of this machine
    with `cpus` logical CPUs, started now and stopped on exit. A cluster with fewer than `cpus` logical CPUs
    is refused with one line naming the params that size the work (`sized_by`), since it would wait for
    them for ever."""
    import ray

    local = distributed.address is None
    where = "a local Ray instance" if local else f"the Ray cluster at {distributed.address}"
    if distributed.address not in (None, "auto"):
        _check_reachable(distributed.address, where)
    options: dict[str, Any] = {"include_dashboard": False, "num_cpus": math.ceil(cpus)} if local else {}
    try:
        ray.init(address="local" if local else distributed.address, logging_level=logging.WARNING, **options)
    except (OSError, RuntimeError) as err:  # OSError: ConnectionError, TimeoutError, a socket path too long
        raise ServiceUnavailable(
            f"could not start or reach {where} ({str(err).splitlines()[0][:160]}): start the cluster "
            "(`ray start --head`), fix distributed.address, or set distributed.engine: local"
        ) from err
    try:
        available = ray.cluster_resources().get("CPU", 0.0)
        log.info("connected to %s: %g logical CPUs", where, available)
        if available < cpus:
            raise ConfigError(
                f"{where} has {available:g} logical CPUs; this work needs {cpus:g} ({sized_by}): lower them "
                "or add nodes"
            )
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str, where: str) -> None:
    """Fail fast: Ray itself waits minutes for a cluster that is not there."""
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ServiceUnavailable(
            f"{where} does not answer ({err.strerror or err}): start it (`ray start --head`), fix "
            "distributed.address, or set distributed.engine: local"
        ) from err
