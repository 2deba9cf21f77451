"""A real Ray cluster of two nodes on this machine, as `ray start` makes one: a head and a second node, each in
its own session with a few logical CPUs, token authentication on. Every process a node started is stopped
on exit (SIGTERM to `ray start --block` leaves its children running, so the fixture kills them by ancestry)."""

import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import psutil

from tests.cli import clean_env
from tests.server import free_port, stopped_on_exit

RAY = str(Path(sys.executable).with_name("ray"))


class RayNode:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.killed = False
        self.port = free_port()  # its raylet's: what tells it apart from the other nodes of this machine
        args = [*args, "--node-manager-port", str(self.port)]
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [RAY, "start", "--block", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def processes(self) -> list[psutil.Process]:
        """`ray start` and everything below it: raylet, object store, and the node's Ray workers."""
        with suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        return []

    def kill(self) -> None:
        """The node dies at once, as a machine that loses power: SIGKILL to every one of its processes."""
        self.killed = True
        doomed = self.processes()
        for process in doomed:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(doomed, timeout=30)


class RayCluster:
    """`address` and `client_address` are what `distributed.address` takes; `env` carries the auth token."""

    def __init__(self, root: Path, cpus_per_node: int, stack: ExitStack) -> None:
        port, client_port = free_port(), free_port()
        self.root, self.cpus_per_node, self.stack = root, cpus_per_node, stack
        self.address = f"127.0.0.1:{port}"  # a driver on one of the cluster's machines connects to the GCS
        self.client_address = f"ray://127.0.0.1:{client_port}"  # any other driver, through Ray Client
        self.env = clean_env() | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.nodes: list[RayNode] = []
        # the head runs the dashboard, as KubeRay's does: it serves the state API Ray Train's controller polls
        self.add_node(
            [
                "--head",
                "--port",
                str(port),
                "--ray-client-server-port",
                str(client_port),
                "--temp-dir",
                str(root),
                "--dashboard-port",
                str(free_port()),
            ]
        )
        self.add_node()

    def add_node(self, args: list[str] | None = None) -> RayNode:
        """Start a node (by default a worker node joining the head) and wait until its CPUs count."""
        args = args or ["--address", self.address]  # usage stats: off through cvops's OFFLINE_ENV
        log = self.root.with_name(f"{self.root.name}-node{len(self.nodes)}.log")
        node = RayNode([*args, "--num-cpus", str(self.cpus_per_node)], self.env, log)
        self.stack.enter_context(_all_stopped(node))
        self.nodes.append(node)
        self.wait_for_cpus(self.cpus_per_node * sum(not n.killed for n in self.nodes))
        return node

    def node_id(self, node: RayNode) -> str:
        """The id Ray gave `node` (alive or dead)."""
        probe = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(*[n['NodeID'] for n in ray.nodes() if n['NodeManagerPort'] == int(sys.argv[2])])"
        )
        found = subprocess.run(
            [sys.executable, "-c", probe, self.address, str(node.port)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return found.stdout.split()[-1]

    @property
    def alive_workers(self) -> list[RayNode]:
        """The nodes other than the head that have not been killed."""
        return [node for node in self.nodes[1:] if not node.killed]

    def wait_for_cpus(self, cpus: int, timeout: float = 120.0) -> None:
        """Until the cluster counts `cpus` logical CPUs on its alive nodes (both nodes have joined)."""
        probe = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(int(ray.cluster_resources().get('CPU', 0)))"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                assert node.killed or node.process.poll() is None, node.log.read_text()[-3000:]
            found = subprocess.run(
                [sys.executable, "-c", probe, self.address], env=self.env, capture_output=True, text=True, timeout=120
            )
            if found.returncode == 0 and found.stdout.split()[-1:] == [str(cpus)]:
                return
            time.sleep(0.5)
        raise AssertionError(f"the Ray cluster never reached {cpus} CPUs: {found.stdout[-500:]}{found.stderr[-2000:]}")


def assert_all_gone(session_root: Path, timeout: float = 30.0) -> None:
    """Within `timeout`, no process names `session_root` (a Ray session's folder: its raylet, GCS, agents);
    any left then are killed, and the test fails."""
    deadline = time.monotonic() + timeout
    while left := [
        p for p in psutil.process_iter(["cmdline"]) if str(session_root) in " ".join(p.info["cmdline"] or [])
    ]:
        if time.monotonic() > deadline:
            for process in left:
                with suppress(psutil.NoSuchProcess):
                    process.kill()
            raise AssertionError(f"Ray processes left running: {left}")
        time.sleep(0.2)


@contextmanager
def _all_stopped(node: RayNode) -> Iterator[None]:
    with stopped_on_exit(node.process) as workers:
        try:
            yield
        finally:
            workers += node.processes()


@contextmanager
def ray_cluster(cpus_per_node: int = 2) -> Iterator[RayCluster]:
    """A head and a second node with `cpus_per_node` logical CPUs each; every process of both gone afterwards."""
    # A short root: Ray's socket paths live under it and must stay within the 107 bytes a socket path may have
    root = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    try:
        with ExitStack() as stack:
            yield RayCluster(root, cpus_per_node, stack)
    finally:
        try:
            assert_all_gone(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            for log in root.parent.glob(f"{root.name}-node*.log"):
                log.unlink()
