"""The Ray engine (`distributed.engine: ray`): a Ray session for one command, on a local instance or a cluster.

Ray is imported inside functions only, here and where work runs on Ray (serving/on_ray.py), and only when the
engine is ray: the embedded default starts no Ray process.
"""

import logging
import math
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cvops.config import DistributedParams
from cvops.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0
REMEDY = "start the cluster (`ray start --head`), fix distributed.address, or set distributed.engine: local"


@contextmanager
def ray_session(
    distributed: DistributedParams, workers: int, per_worker: dict[str, float], sized_by: str
) -> Iterator[None]:
    """Connected to `distributed.address` for the duration of the block; null: a Ray instance of this machine,
    started now with room for `workers` x `per_worker` logical CPUs and stopped on exit. A cluster without
    that room for `per_worker`'s resources ("CPU", "GPU"), in all or on any one node for one worker, is refused
    with one line naming the params that size the work (`sized_by`), since the work would wait for ever."""
    import ray
    from ray.exceptions import RayError

    local = distributed.address is None
    where = "a local Ray instance" if local else f"the Ray cluster at {distributed.address}"
    if distributed.address not in (None, "auto"):
        _check_reachable(distributed.address, where)
        _check_token(distributed.address, where)
    # the dashboard serves Ray's state API, which Ray Train's controller polls; port 0: any free port
    options: dict[str, Any] = {"dashboard_port": 0, "num_cpus": math.ceil(workers * per_worker["CPU"])}
    handler = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(
            address="local" if local else distributed.address,
            logging_level=logging.WARNING,
            **(options if local else {}),
        )
    except (OSError, RuntimeError, RayError) as err:  # OSError: ConnectionError, TimeoutError, a socket path too long
        ray.shutdown()
        raise ServiceUnavailable(
            f"could not start or reach {where} ({str(err).splitlines()[0][:160]}): {REMEDY}"
        ) from err
    except BaseException:  # SIGTERM (Ray's handler, while it starts) or Ctrl-C: stop what it started
        ray.shutdown()
        raise
    finally:
        if threading.current_thread() is threading.main_thread():  # where Ray installs its own on init
            signal.signal(signal.SIGTERM, handler)  # cvops's clean exit on SIGTERM stays
    try:
        alive = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        log.info(
            "connected to %s: %g logical CPUs on %d nodes", where, sum(n.get("CPU", 0.0) for n in alive), len(alive)
        )
        for resource, amount in per_worker.items():
            _check_room(where, [node.get(resource, 0.0) for node in alive], resource, workers, amount, sized_by)
        yield
    finally:
        ray.shutdown()


def _check_room(where: str, nodes: list[float], resource: str, workers: int, amount: float, sized_by: str) -> None:
    if sum(nodes) < workers * amount or max(nodes, default=0.0) < amount:
        raise ConfigError(
            f"{where} has {sum(nodes):g} logical {resource}s (at most {max(nodes, default=0.0):g} on a node); this "
            f"work needs {workers * amount:g}, {amount:g} on one node per worker ({sized_by}): lower them or add nodes"
        )


def _check_reachable(address: str, where: str) -> None:
    """Fail fast: Ray itself waits minutes for a cluster that is not there."""
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ServiceUnavailable(f"{where} does not answer ({err.strerror or err}): {REMEDY}") from err


def _check_token(address: str, where: str) -> None:
    """Fail fast on a missing or wrong token: ray.init retries a GCS that refuses it for 20 s, then says only
    that it could not connect. Ray Client addresses (ray://) are left to ray.init."""
    if address.startswith("ray://"):
        return
    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # what ray.init connects with; one try
    from ray.exceptions import AuthenticationError

    try:
        GcsClient(address=address)
    except AuthenticationError as err:
        raise ServiceUnavailable(
            f"{where} refused this command's token: set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's "
            "token (`ray get-auth-token` on its head) and RAY_AUTH_MODE=token"
        ) from err
    except Exception:  # anything else is for ray.init to report, after its retries
        return
