"""`cvops serve` and `cvops ui`: servers that run until they are stopped, and stop with their parent."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from cvops.cli.app import initialized_project, main, project, registry
from cvops.config import UI_PORT, Params, Project
from cvops.env import SERVE_MODEL_ENV, SERVE_OVERRIDES_ENV, ZENML_STORE_URL_ENV
from cvops.registry.aliases import CHAMPION

if TYPE_CHECKING:
    from cvops.registry.model_registry import ModelRegistry

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_SECONDS = 30  # after a stop signal, how long a server may take to finish before it is killed


def run_server(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run a server in its own process group until it exits. A stop signal to this process (SIGTERM from
    systemd, a supervisor or `kill`; SIGINT from Ctrl-C) goes to the server's whole group; a server that has
    not stopped GRACE_SECONDS later is killed, and any worker left in its group after it exits is stopped
    too, so nothing outlives this process. Returns the server's exit status, as a shell reports it."""
    server = subprocess.Popen(command, env=env, start_new_session=True)
    stopping: list[float] = []

    def forward(signum: int, _: FrameType | None) -> None:
        stopping.append(time.monotonic())
        _signal_group(server.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        while True:
            try:
                code = server.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() - stopping[0] > GRACE_SECONDS:
                    _signal_group(server.pid, signal.SIGKILL)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop_group(server.pid)
    return code if code >= 0 else 128 - code


def _signal_group(group: int, signum: int) -> bool:
    """Send `signum` to every process of `group`; False when the group is gone."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def _stop_group(group: int) -> None:
    """Stop what is left of a server's process group (workers it did not stop), waiting until it is gone."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not _signal_group(group, signum):
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not _signal_group(group, 0):  # signal 0 only asks whether the group still exists
                return
            time.sleep(0.1)


@dataclass(frozen=True)
class ServeOptions:
    """`cvops serve`'s options, as click parses them."""

    version: str | None  # pinned; else the alias is served, and followed
    alias: str
    port: int | None
    host: str
    workers: str | None
    canary: str | None
    canary_fraction: float | None
    shadow: str | None
    shadow_fraction: float | None
    settings: tuple[str, ...]  # KEY=VALUE params for this server only

    @property
    def selector(self) -> str:
        """The registry version or alias the server loads."""
        return self.version or self.alias

    def overrides(self) -> list[str]:
        """The params overrides of this server: -S settings, then the serve.* options that were given."""
        given = (
            ("workers", self.workers),
            ("canary.version", self.canary),
            ("canary.fraction", self.canary_fraction),
            ("shadow.version", self.shadow),
            ("shadow.fraction", self.shadow_fraction),
        )
        return [*self.settings] + [f"serve.{key}={value}" for key, value in given if value is not None]


@main.command()
@click.option(
    "--version", "version", help="Serve this registered version (pinned; an alias is pinned to its version now)."
)
@click.option("--alias", default=CHAMPION, show_default=True, help="Serve the version this alias names, and follow it.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: params serve.port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--workers", metavar="N|auto", help="Serving processes (serve.workers; auto: one per core).")
@click.option("--canary", metavar="challenger|V", help="A canary answers a share of requests (serve.canary.version).")
@click.option(
    "--canary-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="F",
    help="The canary's share of requests (serve.canary.fraction, default 0.1).",
)
@click.option("--shadow", metavar="ALIAS|V", help="A shadow scores requests off the response path (serve.shadow).")
@click.option(
    "--shadow-fraction",
    type=click.FloatRange(0, 1, min_open=True),
    metavar="F",
    help="The shadow's share of the champion's requests (serve.shadow.fraction, default 1).",
)
@click.option(
    "-S",
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A params value for this server only, e.g. -S serve.capture.fraction=0.1 (repeatable).",
)
def serve(**options: Any) -> None:
    """Serve a model over HTTP with BentoML: a classifier's POST /classify, /classify_batch, /feedback, a
    detector's (task: detection) POST /detect (?render=1: the image with its boxes drawn), /detect_batch; GET
    /livez, /healthz, /readyz, /metrics.

    The service runs serve.workers processes (auto: one per core). With an alias (default: champion)
    each checks the registry every serve.poll_seconds and swaps in a newly promoted version without
    downtime. Set CVOPS_API_TOKEN to require a bearer token.
    SIGTERM or Ctrl-C stops the server and its workers, and the command exits with the server's status.

    A canary (the challenger: the version waiting for review) answers a share of the requests; a client
    that sends an X-Request-Key header always reaches the same version. It stops answering once it is
    promoted or rejected. A shadow scores the champion's requests after they are answered, and logs its
    predictions beside the champion's. Every answer names its model_version, arm and request_id; compare
    the arms with `cvops models compare-live`. POST /feedback {"request_id": ..., "label": ...} records an
    answer's true label (live accuracy in `cvops run monitoring`).

    Capture (serve.capture, off by default) keeps the raw images of a random share of the answers and of
    every answer under a confidence, in serve.capture.store, for `cvops labels queue`.

    \b
    Examples:
      cvops serve                                   # the champion, on serve.port
      cvops serve --version 3 --port 3001 --workers 4
      cvops serve --version previous                # pinned to the version `previous` names now
      cvops serve --canary challenger --canary-fraction 0.05
      cvops serve --shadow challenger --shadow-fraction 0.5
      cvops serve -S serve.capture.fraction=0.05 -S serve.capture.below_confidence=0.6
      curl -F image=@cell.png http://127.0.0.1:3000/classify
      curl --data-binary @cell.png -H 'Content-Type: image/png' http://127.0.0.1:3000/classify
      curl -F image=@shelf.jpg 'http://127.0.0.1:3000/detect?render=1' -o boxes.png   # a detector
    """
    from cvops.registry.artifacts import resolve
    from cvops.tasks import task

    chosen = ServeOptions(**options)
    checkout = project()
    overrides = chosen.overrides()
    params = checkout.params(overrides)
    versions = registry(checkout, params)
    if chosen.version:  # pinned: the number, which the server loads and never follows
        chosen = replace(chosen, version=versions.resolve(chosen.version).version)
    served = resolve(versions, chosen.selector, checkout.onnx_cache)  # fail here, not in the server
    arms = _arms(checkout, params, versions)
    port = chosen.port or params.serve.port
    click.echo(
        f"serving {served.model_name} version {served.version} ({chosen.selector}) on http://{chosen.host}:{port} "
        "(Ctrl-C stops it)"
    )
    for line in arms:
        click.echo(line)
    service = task(params.task).service
    command = [sys.executable, "-m", "bentoml", "serve", service, "--host", chosen.host, "--port", str(port)]
    env = {**os.environ, SERVE_MODEL_ENV: chosen.selector, SERVE_OVERRIDES_ENV: json.dumps(overrides)}
    sys.exit(run_server(command, env=env))


def _arms(checkout: Project, params: Params, versions: "ModelRegistry") -> list[str]:
    """A line for each arm beside the champion (canary, shadow) and for capture; refuses a canary or shadow that
    cannot serve before the server starts."""
    from cvops.registry.artifacts import resolve
    from cvops.serving.rollout import check_canary

    arms = []
    if canary := params.serve.canary.version:
        tried = resolve(versions, check_canary(versions, canary).version, checkout.onnx_cache)
        arms.append(f"  canary: version {tried.version} ({canary}) answers {params.serve.canary.fraction:.0%}")
    if shadow := params.serve.shadow.version:
        tried = resolve(versions, shadow, checkout.onnx_cache)
        arms.append(
            f"  shadow: version {tried.version} ({shadow}) scores {params.serve.shadow.fraction:.0%} "
            "of the champion's requests"
        )
    if (capture := params.serve.capture).enabled:
        unsure = f" and every one under confidence {capture.below_confidence}" if capture.below_confidence else ""
        arms.append(
            f"  capture: {capture.fraction:.0%} of the images{unsure}, into "
            f"{checkout.capture_store(params.serve)} (kept {capture.retention_days:g} days)"
        )
    return arms


@main.command()
@click.option("--port", default=UI_PORT, show_default=True, help="Port on 127.0.0.1.")
def ui(port: int) -> None:
    """Start the MLflow UI on 127.0.0.1 over the checkout's tracking store (SIGTERM or Ctrl-C stops it). With
    a team stack (MLFLOW_TRACKING_URI is a server), nothing starts: it says where the team's UIs are.

    \b
    Example:
      cvops ui --port 5001     # then open http://127.0.0.1:5001
    """
    checkout = initialized_project()
    if checkout.tracking_server:
        click.echo(f"MLflow UI: {checkout.tracking_uri} (the team's server; sign in as your MLflow user)")
        if dashboard := os.environ.get(ZENML_STORE_URL_ENV):
            click.echo(f"ZenML dashboard: {dashboard}")
        return
    click.echo(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C stops it)")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        checkout.tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    sys.exit(run_server(command))
