"""Benchmark: the request path of `cvops serve`, against raw onnxruntime and the service a user would write.

In one run, on loopback, with the demo's shipped model and ELPV-sized images (the first 16 PNG files of the
demo's test split, 300x300), each HTTP subject is loaded by wrk (one thread, keep-alive connections, as many
connections as the concurrency) for --seconds at concurrency 1, 8, 32 and 64, with the image as the raw body
(Content-Type: image/png) and as a multipart file field:
- raw onnxruntime: the shipped ONNX file in this process at batch = concurrency, the model alone (inputs
  already decoded and normalised), every core;
- minimal FastAPI: bench/minimal_service.py under uvicorn (one process, no access log): decode, resize,
  normalise, model, one request at a time; what a user would write by hand;
- cvops with 1 worker and with `workers: auto` (one per core): validation, adaptive batching, metrics, the
  inference log, request ids.
Then the cost of rollout on cvops (auto workers, raw body, c=1 and c=32): a canary answering half the
requests (the challenger; skipped when the registry has none), and a shadow scoring every request (the
served version again: its model CPU doubles), against neither; the three servers run at once and are
loaded in turns, 3 rounds, and each cost is the median of the rounds' paired ratios.

wrk runs on the same cores as the servers; its CPU share is reported. Needs Debian's wrk (`apt install wrk`).

Usage: python bench/serving.py [--version V] [--seconds 8]
Writes bench/results/serving.json and prints markdown tables.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads
LEVELS = (1, 8, 32, 64)
ROUNDS = 3  # of the rollout configurations, in turns
BODIES = ("raw", "multipart")
OUT = REPO / "bench" / "results" / "serving.json"
# wrk's script: a request per file in turn; at the end, the numbers as one JSON line
WRK_SCRIPT = """
local bodies, i = {}, 0
for line in io.lines(os.getenv("BENCH_BODIES")) do
  local f = io.open(line, "rb"); bodies[#bodies + 1] = f:read("*a"); f:close()
end
local content_type = os.getenv("BENCH_CONTENT_TYPE")
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/classify", {["Content-Type"] = content_type}, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bodies(pngs: list[bytes], folder: Path) -> dict[str, tuple[Path, str]]:
    """Each body kind as (a file listing the body files, its content type)."""
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    made = {}
    for kind, content_type in (("raw", "image/png"), ("multipart", f"multipart/form-data; boundary={boundary}")):
        paths = []
        for i, data in enumerate(pngs):
            if kind == "multipart":
                head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{i}.png"\r\n'
                data = f"{head}Content-Type: image/png\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
            paths.append(folder / f"{kind}-{i}.bin")
            paths[-1].write_bytes(data)
        listing = folder / f"{kind}.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        made[kind] = (listing, content_type)
    return made


def wrk(port: int, body: tuple[Path, str], concurrency: int, seconds: int, script: Path) -> dict[str, Any]:
    """One wrk run: throughput, latency percentiles, errors (non-2xx included) and wrk's own CPU share."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    env = {**os.environ, "BENCH_BODIES": str(body[0]), "BENCH_CONTENT_TYPE": body[1]}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH "))
    result = json.loads(line.removeprefix("BENCH "))
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {
        "concurrency": concurrency,
        "throughput_rps": result["requests"] / result["seconds"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "errors": result["errors"],
        "requests": result["requests"],
        "wrk_cpu_share": cpu / (wall * (os.cpu_count() or 1)),
    }


@contextmanager
def server(command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[None]:
    """A server in its own process group, ready when /readyz (or the OpenAPI page) answers; stopped after."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while not any(_answers(port, path) for path in ("/readyz", "/openapi.json")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"a server did not start: see {log}")
            time.sleep(0.5)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _answers(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def measure(
    port: int,
    made: dict[str, tuple[Path, str]],
    levels: tuple[int, ...],
    seconds: int,
    script: Path,
    kinds: tuple[str, ...] = BODIES,
) -> list[dict[str, Any]]:
    wrk(port, made[kinds[0]], 4, 2, script)  # warm-up: every worker loads its model, the batcher starts
    return [{"body": kind, **wrk(port, made[kind], c, seconds, script)} for kind in kinds for c in levels]


def in_process(onnx_path: Path, pngs: list[bytes]) -> dict[str, dict[str, float]]:
    """The model alone at each batch size (every core), and the whole pipeline without HTTP at batch 32 on
    one thread (decode, resize, features, model): what one core can do at best."""
    from cvops.data.preprocess import model_inputs
    from cvops.export.onnx_model import predict_logits, read_preprocessing, session
    from cvops.serving.predictor import Predictor, decode_image
    from cvops.timing import interleaved_calls, latency

    pre = read_preprocessing(onnx_path)
    pixels = np.stack([decode_image(data, pre.image_size, 10**8, pre.resize, pre.decoder).pixels for data in pngs])
    inputs = model_inputs(np.resize(pixels, (max(LEVELS), *pixels.shape[1:])), pre.mean, pre.std)
    ort = session(onnx_path)
    one_thread = Predictor(onnx_path, "bench", "-", "-", 32, threads=1)
    files = [pngs[i % len(pngs)] for i in range(32)]

    def pipeline() -> object:
        decoded = [decode_image(data, pre.image_size, 10**8, pre.resize, pre.decoder) for data in files]
        return one_thread.predict(np.stack([image.pixels for image in decoded]))

    calls: dict[str, Callable[[], object]] = {
        f"model, batch {b}": partial(predict_logits, ort, inputs[:b], batch_size=b) for b in LEVELS
    }
    calls["decode + model, batch 32, 1 thread"] = pipeline
    sizes = {name: int(name.split("batch ")[1].split(",")[0]) for name in calls}
    return {
        name: {"ms": latency(done).median, "images_per_s": sizes[name] * 1000 / latency(done).median}
        for name, done in interleaved_calls(calls, 20).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="registered version to serve (default: the champion, else the newest)")
    parser.add_argument("--seconds", type=int, default=8, help="wrk's duration per level")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serving.py needs wrk: `apt install wrk` (Debian, Ubuntu) or `brew install wrk`")

    from checkout import registered_version
    from PIL import Image

    from cvops.data.prepare import load_dataset_ref, load_split
    from cvops.registry.artifacts import resolve
    from cvops.registry.model_registry import CHALLENGER

    project, _, registry, info = registered_version(args.version)
    served = resolve(registry, info.version, project.onnx_cache)
    _, _, manifest = load_split(load_dataset_ref(project.prepared_dir), "test")
    files = [project.raw_dir / str(path) for path in manifest["path"][:16]]
    with Image.open(files[0]) as first:
        size = f"{first.width}x{first.height} {first.format}"
    pngs = [path.read_bytes() for path in files]
    results_dir = REPO / "bench" / "results"
    env = {k: v for k, v in os.environ.items() if k not in ("CVOPS_ROOT", "ZENML_CONFIG_PATH")}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        script = folder / "bench.lua"
        script.write_text(WRK_SCRIPT)
        made = bodies(pngs, folder)
        minimal = [
            sys.executable,
            "-m",
            "uvicorn",
            "minimal_service:app",
            "--app-dir",
            str(REPO / "bench"),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        cvops = [sys.executable, "-m", "cvops.cli", "serve", "--version", info.version]
        subjects = {
            "minimal FastAPI": (minimal, {"MINIMAL_ONNX": served.onnx_path}),
            "cvops, 1 worker": ([*cvops, "--workers", "1"], {}),
            "cvops, workers auto": ([*cvops, "--workers", "auto"], {}),
        }
        for name, (command, extra) in subjects.items():
            port = free_port()
            with server([*command, "--port", str(port)], port, env | extra, results_dir / "serving-server.log"):
                rows += [{"subject": name, **row} for row in measure(port, made, LEVELS, args.seconds, script)]
            print(f"measured {name}", file=sys.stderr)
        rollout: dict[str, list[str]] = {"none": []}
        if registry.alias(CHALLENGER) is not None:
            rollout["canary 50%"] = ["--canary", "challenger", "--canary-fraction", "0.5"]
        rollout["shadow 100%"] = ["--shadow", info.version]
        servers = {name: [*cvops, "--workers", "auto", *options] for name, options in rollout.items()}
        costs, ratios = rollout_costs(servers, made["raw"], args.seconds, script, env, results_dir)
    raw = in_process(Path(served.onnx_path), pngs)
    report(rows, costs, ratios, raw, info.version, Path(served.onnx_path).name, size)


def rollout_costs(
    servers: dict[str, list[str]],
    body: tuple[Path, str],
    seconds: int,
    script: Path,
    env: dict[str, str],
    results_dir: Path,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Every configuration served at once (an idle server costs nothing) and loaded in turns, ROUNDS rounds at
    c=1 and c=32: the median round of each, and each configuration's median ratio to "none" in the same round."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(name, c): [] for name in servers for c in (1, 32)}
    with ExitStack() as stack:
        ports = {name: free_port() for name in servers}
        for i, (name, command) in enumerate(servers.items()):
            log = results_dir / f"serving-server-{i}.log"
            stack.enter_context(server([*command, "--port", str(ports[name])], ports[name], env, log))
        for port in ports.values():
            wrk(port, body, 4, 2, script)  # warm-up
        for _ in range(ROUNDS):
            for (name, c), done in runs.items():
                done.append(wrk(ports[name], body, c, seconds, script))
    rows = [
        {"rollout": name, **sorted(done, key=lambda r: r["throughput_rps"])[ROUNDS // 2]}
        for (name, _), done in runs.items()
    ]
    ratios = {
        f"{name}, c={c}": {
            measure_: float(np.median([r[key] / base[key] for r, base in zip(done, runs["none", c], strict=True)]))
            for measure_, key in (("throughput", "throughput_rps"), ("p50", "p50_ms"))
        }
        for (name, c), done in runs.items()
        if name != "none"
    }
    return rows, ratios


def report(
    rows: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    ratios: dict[str, dict[str, float]],
    raw: dict[str, dict[str, float]],
    version: str,
    onnx: str,
    size: str,
) -> None:
    def best(subject: str, body: str, c: int) -> dict[str, Any]:
        return next(r for r in rows if r["subject"] == subject and r["body"] == body and r["concurrency"] == c)

    auto, minimal = "cvops, workers auto", "minimal FastAPI"

    def rate(subject: str, body: str, c: int = 32) -> float:
        return float(best(subject, body, c)["throughput_rps"])

    summary: dict[str, Any] = {
        "cvops_c32_vs_raw_onnxruntime": {b: rate(auto, b) / raw["model, batch 32"]["images_per_s"] for b in BODIES},
        "cvops_c32_vs_minimal": {b: rate(auto, b) / rate(minimal, b) for b in BODIES},
        "cvops_1_worker_c32_vs_minimal": {b: rate("cvops, 1 worker", b) / rate(minimal, b) for b in BODIES},
        "cvops_p50_ms_c1": {b: best(auto, b, 1)["p50_ms"] for b in BODIES},
        "errors": sum(r["errors"] for r in rows + costs),
    }
    summary["rollout"] = ratios
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "version": version,
        "onnx": onnx,
        "images": size,
        "levels": rows,
        "rollout": costs,
        "in_process": raw,
        "summary": summary,
    }
    OUT.write_text(json.dumps(result, indent=2))
    print("| subject | body | concurrency | req/s | p50 ms | p99 ms | errors | wrk CPU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['subject']} | {r['body']} | {r['concurrency']} | {r['throughput_rps']:.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['errors']} | {r['wrk_cpu_share']:.0%} |"
        )
    print("\n| in process, no HTTP | ms per batch | images/s |\n|---|---|---|")
    for name, r in raw.items():
        print(f"| {name} | {r['ms']:.2f} | {r['images_per_s']:.0f} |")
    print("\n| rollout (cvops, workers auto, raw body) | concurrency | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for c in costs:
        print(
            f"| {c['rollout']} | {c['concurrency']} | {c['throughput_rps']:.0f} | {c['p50_ms']:.1f} | "
            f"{c['p99_ms']:.1f} | {c['errors']} |"
        )
    print(f"\nversion {version} ({onnx}), images {size}; summary: {json.dumps(summary, indent=1)}")
    print(f"machine: {result['machine']}; JSON: {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
