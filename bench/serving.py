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

Photos: 8 photo-like 12-megapixel JPEGs (4000x3000, quality 90, stored sideways with an EXIF rotation, as phones
send them) as the raw body, at the same levels, to cvops (workers auto) serving the model as it was exported
(its `prepare.decoder`: draft decodes at the smallest DCT scale that covers the input) and the same model's file
marked as exported before `prepare.decoder` (decoded in full: what cvops did before; served from a scratch
BentoML store, as a bento serves). Both kinds of image also go through a plain loop on the same cores, one
process per core with one runtime thread: decode, resize, normalise and the model at batch 32, no HTTP (the
ceiling of any service).

wrk runs on the same cores as the servers; its CPU share is reported. Needs Debian's wrk (`apt install wrk`).

`--sweep` tunes the service instead (cvops.serving.tuning): every setting of serve.workers, serve.threads,
serve.max_batch_images and serve.batch_wait_ms worth trying on these cores, one server each, loaded at
--concurrency for --seconds; the three best (the highest throughput with p99 within --p99-ms) are then measured
again in turns, 3 rounds, and the best by their medians is chosen; it is printed as the `cvops params set` line
that adopts it (the bench runs in cvops's own clone, whose params.yaml is every new project's template, so it
writes none).

Usage: python bench/serving.py [--version V] [--seconds 8]
       python bench/serving.py --sweep [--p99-ms 100] [--concurrency 32]
Writes bench/results/serving.json (the sweep: serving-sweep.json) and prints markdown tables.
"""

import argparse
import io
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
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads
LEVELS = (1, 8, 32, 64)
ROUNDS = 3  # of the rollout configurations and of the sweep's finalists, in turns
FINALISTS = 3  # of the sweep, measured again in turns
FORMATS = {"throughput_rps": ".0f", "p99_ms": ".1f"}  # of the sweep's table
BODIES = ("raw", "multipart")
PHOTO = "jpeg 12 MP"  # the photos' body
PHOTOS = 8
RESULTS = REPO / "bench" / "results"
OUT = RESULTS / "serving.json"
SWEEP_OUT = RESULTS / "serving-sweep.json"
# Stores a ServedModel (JSON, argv[1]) in the BentoML store BENTOML_HOME names: run in its own process, since
# BentoML reads BENTOML_HOME once, when it is imported
STORE = """
import sys
from pathlib import Path
from cvops.export.onnx_model import read_preprocessing
from cvops.registry.artifacts import ServedModel
from cvops.serving.packaging import store_model
served = ServedModel.model_validate_json(sys.argv[1])
print(store_model(served, read_preprocessing(Path(served.onnx_path)), {}))
"""
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


def bodies(files: list[bytes], folder: Path, mime: str, kinds: tuple[str, ...] = BODIES) -> dict[str, tuple[Path, str]]:
    """Each body kind as (a file listing the body files, its content type)."""
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    suffix = mime.split("/")[1]
    made = {}
    for kind, content_type in (("raw", mime), ("multipart", f"multipart/form-data; boundary={boundary}")):
        if kind not in kinds:
            continue
        paths = []
        for i, data in enumerate(files):
            if kind == "multipart":
                head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{i}.{suffix}"\r\n'
                data = f"{head}Content-Type: {mime}\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
            paths.append(folder / f"{suffix}-{kind}-{i}.bin")
            paths[-1].write_bytes(data)
        listing = folder / f"{suffix}-{kind}.txt"
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
    parser.add_argument("--sweep", action="store_true", help="tune serve.* instead (see above)")
    parser.add_argument("--p99-ms", type=float, default=100.0, help="the sweep's p99 latency target")
    parser.add_argument("--concurrency", type=int, default=32, help="the sweep's load: connections")
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
    env = {k: v for k, v in os.environ.items() if k not in ("CVOPS_ROOT", "ZENML_CONFIG_PATH")}
    cvops = [sys.executable, "-m", "cvops.cli", "serve", "--version", info.version]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        script = folder / "bench.lua"
        script.write_text(WRK_SCRIPT)
        if args.sweep:
            sweep(cvops, bodies(pngs, folder, "image/png", ("raw",))["raw"], args, env, script, size)
            return
        made = bodies(pngs, folder, "image/png")
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
        subjects = {
            "minimal FastAPI": (minimal, {"MINIMAL_ONNX": served.onnx_path}),
            "cvops, 1 worker": ([*cvops, "--workers", "1"], {}),
            "cvops, workers auto": ([*cvops, "--workers", "auto"], {}),
        }
        rows: list[dict[str, Any]] = []
        for name, (command, extra) in subjects.items():
            port = free_port()
            with server([*command, "--port", str(port)], port, env | extra, RESULTS / "serving-server.log"):
                rows += [{"subject": name, **row} for row in measure(port, made, LEVELS, args.seconds, script)]
            print(f"measured {name}", file=sys.stderr)
        photos = photo_files()
        shot = bodies(photos, folder, "image/jpeg", ("raw",))
        decoders = {
            "cvops, workers auto": {},
            "cvops, full decode (before)": full_decoding(Path(served.onnx_path), served, folder, env),
        }
        for name, extra in decoders.items():
            port = free_port()
            command = [*cvops, "--workers", "auto", "--port", str(port)]
            with server(command, port, env | extra, RESULTS / "serving-server.log"):
                rows += [
                    {"subject": name, **row, "body": PHOTO}
                    for row in measure(port, shot, LEVELS, args.seconds, script, ("raw",))
                ]
            print(f"measured photos: {name}", file=sys.stderr)
        rollout: dict[str, list[str]] = {"none": []}
        if registry.alias(CHALLENGER) is not None:
            rollout["canary 50%"] = ["--canary", "challenger", "--canary-fraction", "0.5"]
        rollout["shadow 100%"] = ["--shadow", info.version]
        servers = {name: [*cvops, "--workers", "auto", *options] for name, options in rollout.items()}
        costs, ratios = rollout_costs(servers, made["raw"], args.seconds, script, env)
    onnx_path = Path(served.onnx_path)
    raw = in_process(onnx_path, pngs)
    plain = {body: plain_loop(onnx_path, images, args.seconds) for body, images in (("png", pngs), (PHOTO, photos))}
    report(rows, costs, ratios, raw, plain, info.version, onnx_path.name, size)


def photo_files() -> list[bytes]:
    """PHOTOS photo-like 12-megapixel JPEGs, quality 90, stored sideways with an EXIF rotation (bench/decoding.py's)."""
    from decoding import with_rotation

    from tests.images import photo

    return [with_rotation(photo(4000, 3000, seed=i)) for i in range(PHOTOS)]


def full_decoding(onnx_path: Path, served: Any, folder: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment that serves the model of `onnx_path` as cvops served it before `prepare.decoder`: its file
    marked as exported before it (so a JPEG is decoded in full), packaged in a scratch BentoML store."""
    import onnx

    from cvops.data.preprocess import LEGACY_DECODER
    from cvops.env import BENTO_MODEL_ENV
    from cvops.export.onnx_model import read_preprocessing, set_metadata

    proto = onnx.load(onnx_path)
    set_metadata(proto, read_preprocessing(onnx_path).model_copy(update={"decoder": LEGACY_DECODER}))
    copy = folder / "full-decoder" / onnx_path.name
    copy.parent.mkdir()
    onnx.save(proto, copy)
    home = {"BENTOML_HOME": str(folder / "bentoml")}
    marked = served.model_copy(update={"onnx_path": str(copy)}).model_dump_json()
    stored = subprocess.run([sys.executable, "-c", STORE, marked], env=env | home, capture_output=True, text=True)
    if stored.returncode:
        raise SystemExit(f"could not store the full-decoding copy: {stored.stderr.strip().splitlines()[-1]}")
    return home | {BENTO_MODEL_ENV: stored.stdout.strip().splitlines()[-1]}


def plain_loop(onnx_path: Path, files: list[bytes], seconds: float) -> float:
    """Images per second of the plain loop: one process per core, each decoding, resizing, normalising and
    running the model at batch 32 on one thread for `seconds`; summed."""
    cores = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(cores, mp_context=get_context("spawn")) as pool:
        return sum(pool.map(_loop, [onnx_path] * cores, [files] * cores, [seconds] * cores))


def _loop(onnx_path: Path, files: list[bytes], seconds: float) -> float:
    from PIL import Image

    from cvops.data.preprocess import model_inputs, reduce_while_decoding, resize_image
    from cvops.export.onnx_model import predict_logits, read_preprocessing, session

    pre, model = read_preprocessing(onnx_path), session(onnx_path, threads=1)

    def batch() -> None:
        pixels = []
        for i in range(32):
            with Image.open(io.BytesIO(files[i % len(files)])) as image:
                reduce_while_decoding(image, pre.image_size, pre.decoder)
                pixels.append(resize_image(image, pre.image_size, pre.resize))
        predict_logits(model, model_inputs(np.stack(pixels), pre.mean, pre.std), batch_size=32)

    batch()  # warm-up
    start, images = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch()
        images += 32
    return images / (time.perf_counter() - start)


def sweep(
    cvops: list[str],
    body: tuple[Path, str],
    args: argparse.Namespace,
    env: dict[str, str],
    script: Path,
    size: str,
) -> None:
    """Every setting of cvops.serving.tuning on these cores, a server each, loaded at --concurrency; the
    FINALISTS best measured again in turns (ROUNDS rounds, all serving at once); the best of their medians."""
    from cvops.serving.tuning import Trial, choose, ranked, settings

    def started(setting: Any, stack: ExitStack) -> int:
        port = free_port()
        options = [item for override in setting.overrides for item in ("-S", override)]
        stack.enter_context(server([*cvops, *options, "--port", str(port)], port, env, RESULTS / "serving-server.log"))
        wrk(port, body, 4, 2, script)  # warm-up
        return port

    def trial(setting: Any, done: list[dict[str, Any]]) -> Trial:
        middle = sorted(done, key=lambda r: r["throughput_rps"])[len(done) // 2]
        return Trial(
            setting, middle["throughput_rps"], median(r["p99_ms"] for r in done), sum(r["errors"] for r in done)
        )

    first = []
    for setting in settings(len(os.sched_getaffinity(0))):
        with ExitStack() as stack:
            once = wrk(started(setting, stack), body, args.concurrency, args.seconds, script)
        first.append(trial(setting, [once]))
        print(
            f"{' '.join(setting.overrides)}: {once['throughput_rps']:.0f} req/s, p99 {once['p99_ms']:.1f} ms",
            file=sys.stderr,
        )
    finalists = ranked(first, args.p99_ms)[:FINALISTS]
    runs: dict[Any, list[dict[str, Any]]] = {t.setting: [] for t in finalists}
    with ExitStack() as stack:
        ports = {setting: started(setting, stack) for setting in runs}
        for _ in range(ROUNDS):
            for setting, done in runs.items():
                done.append(wrk(ports[setting], body, args.concurrency, args.seconds, script))
    final = [trial(setting, done) for setting, done in runs.items()]
    best, why = choose(final, args.p99_ms)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "images": size,
        "concurrency": args.concurrency,
        "p99_target_ms": args.p99_ms,
        "trials": [t.row() for t in first],
        "finalists": [t.row() for t in final],
        "chosen": best.row(),
        "why": why,
    }
    SWEEP_OUT.write_text(json.dumps(result, indent=2))
    for title, trials in (("every setting, once", first), (f"the finalists, median of {ROUNDS} rounds", final)):
        print(f"\n{title}: c={args.concurrency}, raw {size} bodies\n")
        print("| workers | threads | max batch | batch wait ms | req/s | p99 ms | errors |")
        print("|---|---|---|---|---|---|---|")
        for t in trials:
            print("| " + " | ".join(f"{value:{FORMATS.get(key, 'g')}}" for key, value in t.row().items()) + " |")
    print(f"\nchosen: {' '.join(best.setting.overrides)}: {why}; JSON: {SWEEP_OUT.relative_to(REPO)}")
    print(f"to adopt it in a project: cvops params set {' '.join(best.setting.overrides)}")


def rollout_costs(
    servers: dict[str, list[str]],
    body: tuple[Path, str],
    seconds: int,
    script: Path,
    env: dict[str, str],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Every configuration served at once (an idle server costs nothing) and loaded in turns, ROUNDS rounds at
    c=1 and c=32: the median round of each, and each configuration's median ratio to "none" in the same round."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(name, c): [] for name in servers for c in (1, 32)}
    with ExitStack() as stack:
        ports = {name: free_port() for name in servers}
        for i, (name, command) in enumerate(servers.items()):
            log = RESULTS / f"serving-server-{i}.log"
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
    plain: dict[str, float],
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
        "cvops_c32_vs_plain_loop": {"png": rate(auto, "raw") / plain["png"], PHOTO: rate(auto, PHOTO) / plain[PHOTO]},
        "photos_vs_full_decode": {
            c: rate(auto, PHOTO, c) / rate("cvops, full decode (before)", PHOTO, c) for c in LEVELS
        },
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
        "plain_loop_images_per_s": plain,
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
    print("\n| plain loop, a process per core, batch 32 | images/s |\n|---|---|")
    for body, rate_ in plain.items():
        print(f"| {body} | {rate_:.0f} |")
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
