"""Benchmark: does the load on the machine change which ONNX file ships?

The int8-vs-fp32 rule ships int8 when it is at least quantize.min_speedup faster at batch 32. This measures
that speed-up again and again on the checkout's fp32 and int8 files (a registered version's, from
`make demo`), with the machine idle and with one and two other processes burning a core each, two ways:

- before: as cvops measured it until issue 12, fp32 timed first, then int8, a median each, on all cores;
- now: cvops/timing.py, the files taking turns call by call on measure.threads threads, the median of the
  paired calls' ratios.

For each, the range of speed-ups over the repeats and how many of them would ship int8.

Usage: python bench/latency.py [--version V] [--repeats 10]
Writes bench/results/latency.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads
BURN = "while True: pass"


def sequential_speedup(fp32, int8, batch, runs: int) -> float:  # type: ignore[no-untyped-def]
    """The measurement cvops used before: fp32 runs, then int8 runs, a median each (after 3 warm-up calls)."""
    medians = []
    for model in (fp32, int8):
        for _ in range(3):
            model.run(None, {"image": batch})
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            model.run(None, {"image": batch})
            timings.append(time.perf_counter() - start)
        medians.append(statistics.median(timings))
    return medians[0] / medians[1]


def version_files(version: str | None):  # type: ignore[no-untyped-def]
    """A registered version's two ONNX files (MLflow artifacts of its run), downloaded; its number; the params."""
    import mlflow
    from checkout import registered_version

    _, params, _, info = registered_version(version)
    if "onnx_int8" not in info.tags:
        raise SystemExit(f"version {info.version} has no int8 file: run `make demo` (quantize.enabled: true)")
    paths = [Path(mlflow.artifacts.download_artifacts(info.tags[tag])) for tag in ("onnx_fp32", "onnx_int8")]
    return paths[0], paths[1], info.version, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="registered version (default: the champion, else the newest)")
    parser.add_argument("--repeats", type=int, default=10, help="measurements per method and load")
    args = parser.parse_args()

    import numpy as np

    from cvops.export.onnx_model import read_preprocessing, session
    from cvops.timing import interleaved_calls, ratio

    fp32_path, int8_path, version, params = version_files(args.version)
    size = read_preprocessing(fp32_path).image_size
    batch = np.random.default_rng(0).standard_normal((32, 3, size, size)).astype(np.float32)
    runs = params.measure.batch_runs
    everything = (session(fp32_path), session(int8_path))  # before: onnxruntime's default, every core
    fixed = (session(fp32_path, params.measure.threads), session(int8_path, params.measure.threads))
    rows = []
    for burners in (0, 1, 2):
        load = [subprocess.Popen([sys.executable, "-c", BURN], start_new_session=True) for _ in range(burners)]
        try:
            before = [sequential_speedup(*everything, batch, runs) for _ in range(args.repeats)]
            now = []
            for _ in range(args.repeats):
                calls = interleaved_calls(
                    {
                        n: (lambda m=m: m.run(None, {"image": batch}))
                        for n, m in zip(("fp32", "int8"), fixed, strict=True)
                    },
                    runs,
                )
                now.append(ratio(calls["fp32"], calls["int8"]).median)
        finally:
            for process in load:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for method, speedups in (
            ("before: sequential medians, all cores", before),
            (f"now: paired calls, {params.measure.threads} thread", now),
        ):
            rows.append(
                {
                    "busy_processes": burners,
                    "method": method,
                    "min": min(speedups),
                    "max": max(speedups),
                    "median": statistics.median(speedups),
                    "speedups": speedups,
                    "ships_int8": sum(s >= params.quantize.min_speedup for s in speedups),
                }
            )

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "version": version,
        "image_size": size,
        "min_speedup": params.quantize.min_speedup,
        "repeats": args.repeats,
        "rows": rows,
    }
    out = REPO / "bench" / "results" / "latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"| other busy processes | measurement | int8 speed-up at batch 32 (min-max, median) "
        f"| ships int8 (of {args.repeats}, needs x{params.quantize.min_speedup}) |"
    )
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['busy_processes']} | {row['method']} | x{row['min']:.2f}-x{row['max']:.2f} "
            f"(x{row['median']:.2f}) | {row['ships_int8']} |"
        )
    print(f"\nmachine: {result['machine']}; version {version} at {size} px; JSON: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
