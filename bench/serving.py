"""Benchmark: the BentoML service under a bounded load on loopback, beside raw onnxruntime in-process.

Starts `cvops serve --version V` (default: the newest version with an ONNX artifact) in this checkout,
then for each concurrency sends a fixed number of single-image POST /classify requests (PNG files of
test images, over keep-alive connections) and records throughput, p50/p99 latency and errors. The same
ONNX file is then timed in-process with onnxruntime at batch 1, 8 and 32 on the same images (decode,
resize and normalisation excluded: the model alone).

Usage: python bench/serving.py [--version V] [--requests 300]
Writes bench/results/serving.json and prints a markdown table.
"""

import argparse
import http.client
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from cvops.stack import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "benchboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


def load(port: int, bodies: list[tuple[bytes, str]], concurrency: int, requests: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in counter:
            body, content_type = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                connection.request("POST", "/classify", body, {"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - start)
                errors += not ok

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    return {"concurrency": concurrency, "requests": requests, "throughput_rps": requests / wall,
            "p50_ms": float(p50), "p99_ms": float(p99), "errors": errors}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="registered version to serve (default: the champion, else the newest)")
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    args = parser.parse_args()

    from checkout import registered_version
    from PIL import Image

    from cvops.artifacts import resolve
    from cvops.data.prepare import load_dataset_ref, load_split
    from cvops.data.preprocess import model_inputs
    from cvops.onnx_model import predict_logits, read_preprocessing, session
    from cvops.timing import interleaved_calls, latency

    project, _, registry, info = registered_version(args.version)
    version = info.version
    served = resolve(registry, version, project.onnx_cache)
    images, _, _ = load_split(load_dataset_ref(project.prepared_dir), "test")
    encoded = []
    for pixels in images[:64]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        encoded.append(multipart(buffer.getvalue()))

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CVOPS_ROOT", "ZENML_CONFIG_PATH")}
    log = (REPO / "bench" / "results" / "serving-server.log").open("w")
    command = [sys.executable, "-m", "cvops.cli", "serve", "--version", version, "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the service did not start: see bench/results/serving-server.log")
            time.sleep(0.5)
        load(port, encoded, 4, 40)  # warm-up
        levels = [load(port, encoded, c, args.requests) for c in (1, 8, 32)]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    onnx_path = Path(served.onnx_path)
    pre = read_preprocessing(onnx_path)
    inputs = model_inputs(np.resize(images, (32, *images.shape[1:])), pre.mean, pre.std)
    ort = session(onnx_path)
    raw = {}
    batches = {b: (lambda b=b: predict_logits(ort, inputs[:b], batch_size=b)) for b in (1, 8, 32)}
    for batch, calls in interleaved_calls(batches, 30).items():
        ms = latency(calls).median
        raw[batch] = {"latency_ms": ms, "images_per_s": batch * 1000 / ms}

    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "version": version,
              "preprocessing": pre.layout, "onnx": onnx_path.name, "image_size": pre.image_size,
              "levels": levels, "raw_onnxruntime": raw,
              "c32_vs_raw_b32": levels[-1]["throughput_rps"] / raw[32]["images_per_s"]}  # fmt: skip
    out = REPO / "bench" / "results" / "serving.json"
    out.write_text(json.dumps(result, indent=2))
    print("| concurrency | requests | throughput req/s | p50 ms | p99 ms | errors | raw onnxruntime, same batch |")
    print("|---|---|---|---|---|---|---|")
    for level, batch in zip(levels, (1, 8, 32), strict=True):
        print(f"| {level['concurrency']} | {level['requests']} | {level['throughput_rps']:.1f} | {level['p50_ms']:.1f} "
              f"| {level['p99_ms']:.1f} | {level['errors']} | {raw[batch]['images_per_s']:.0f} img/s "
              f"({raw[batch]['latency_ms']:.2f} ms/batch) |")  # fmt: skip
    print(
        f"\nversion {version} ({onnx_path.name}, {pre.image_size} px); service at c=32 / raw batch 32: "
        f"{result['c32_vs_raw_b32']:.0%}; machine: {result['machine']}; JSON: {out.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
