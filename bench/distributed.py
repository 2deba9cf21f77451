"""Benchmark: batch inference on Ray Data against the in-process path and a plain onnxruntime loop.

Scores N Fashion-MNIST images (PNG files, 28x28 grey) with one ONNX model, five ways, in one run:
- local: cvops's in-process engine (`score_folder`), onnxruntime on every core;
- plain loop, 1 core: what a user would write by hand: read, decode, resize, normalise and score the same
  files in batches of 32 with onnxruntime on one thread; the per-core reference;
- plain loop, all cores: the same, onnxruntime on every core;
- Ray Data with 1 and 2 scoring actors (`score_on_ray`, one CPU and one onnxruntime thread each) on a Ray
  instance of this machine, started for each run as `cvops run batch-inference` does.
The model is the small run's (resnet10t, overlays/digits.yaml) at 28 px, exported with cvops's exporter and
left untrained: throughput does not depend on the weights, and a small model makes the per-image overhead,
which is what the engines differ in, most of the time. Ray's fixed cost (start to the first and only batch,
one image) is measured on a local instance and on a two-node cluster started by `ray start`.

The marginal rate, (50,000 - 10,000) images over the difference of the two runs' times, is each engine's
throughput once started: what a large job gets.

Usage: python bench/distributed.py [--sizes 10000 50000]
Needs Debian's dataset-fashion-mnist. Writes bench/results/distributed.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvops.stack import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads
sys.path.insert(0, str(REPO))
from tests.ray_cluster import ray_cluster  # noqa: E402

IMAGE_SIZE = 28
BATCH = 32


def write_images(folder: Path, count: int) -> None:
    """The first `count` Fashion-MNIST images (train then test), PNG files in one folder per class."""
    from cvops.data.sources import fashion_mnist_source

    for n, sample in enumerate(fashion_mnist_source().samples):
        if n == count:
            return
        assert sample.image is not None
        target = folder / sample.label / f"{sample.name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        sample.image.save(target)


def export_model(folder: Path):  # type: ignore[no-untyped-def]
    """The small run's architecture as cvops ships it (ONNX, preprocessing in its metadata): a ServedModel."""
    from cvops.artifacts import ServedModel
    from cvops.models import create_model, normalization
    from cvops.onnx_model import Preprocessing
    from cvops.quantization import export_onnx

    model = create_model("resnet10t", 10, "none")
    mean, std = normalization(model)
    preprocessing = Preprocessing(image_size=IMAGE_SIZE, mean=mean, std=std, class_names=[str(i) for i in range(10)])
    path = export_onnx(model, preprocessing, folder / "model.onnx")
    return ServedModel(model_name="bench", version="1", onnx_path=str(path), lineage_id="bench")


def plain_loop(model_path: Path, folder: Path, threads: int) -> int:
    """A hand-written scorer: PIL decode + resize, numpy normalisation, onnxruntime, batches of 32."""
    import onnxruntime as ort
    from PIL import Image

    from cvops.onnx_model import read_preprocessing

    preprocessing = read_preprocessing(model_path)
    mean = np.array(preprocessing.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(preprocessing.std, dtype=np.float32).reshape(1, 3, 1, 1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    files = sorted(p for p in folder.rglob("*.png"))
    labels = 0
    for start in range(0, len(files), BATCH):
        pixels = []
        for path in files[start : start + BATCH]:
            with Image.open(path) as image:
                pixels.append(np.asarray(image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)))
        batch = (np.stack(pixels).transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std
        labels += len(session.run(None, {name: batch})[0].argmax(1))
    return labels


def fixed_cost(served: Any, one: Path, address: str | None, env: dict[str, str]) -> float:
    """Seconds from a fresh process's call to its one-image result on Ray (a new process: Ray keeps its
    connection and token for the life of a process)."""
    code = (
        "import sys, time; from cvops.artifacts import ServedModel; from cvops.config import DistributedParams, "
        "ServeParams; from cvops.serving.on_ray import score_on_ray; start = time.perf_counter(); "
        "score_on_ray(ServedModel.model_validate_json(sys.argv[1]), __import__('pathlib').Path(sys.argv[2]), "
        "ServeParams(), DistributedParams(engine='ray', batch_workers=1, address=sys.argv[3] or None)); "
        "print(time.perf_counter() - start)"
    )
    found = subprocess.run([sys.executable, "-c", code, served.model_dump_json(), str(one), address or ""], env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    return float(found.stdout.split()[-1])


def timed(run: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    rows = run()
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    args = parser.parse_args()

    from cvops.config import DistributedParams, ServeParams
    from cvops.serving.batch import score_folder
    from cvops.serving.on_ray import score_on_ray
    from cvops.serving.predictor import Predictor

    work = Path(tempfile.mkdtemp(prefix="cvops-bench-distributed-"))
    serve = ServeParams(max_batch_images=BATCH)
    cores = os.cpu_count() or 1
    try:
        served = export_model(work)
        model = Path(served.onnx_path)
        rows: list[dict[str, Any]] = []
        for size in args.sizes:
            folder = work / f"images-{size}"
            write_images(folder, size)

            def local(f: Path = folder) -> int:
                return len(score_folder(Predictor.of(served, BATCH), f, serve.max_image_pixels))

            def on_ray(workers: int, f: Path = folder) -> int:
                distributed = DistributedParams(engine="ray", batch_workers=workers, cpus_per_worker=1.0)
                return len(score_on_ray(served, f, serve, distributed))

            runs: dict[str, tuple[Callable[[], int], int]] = {  # name: (run, cores it may use)
                "local (cvops, in process)": (local, cores),
                "plain loop, 1 core": (lambda f=folder: plain_loop(model, f, 1), 1),
                f"plain loop, {cores} cores": (lambda f=folder: plain_loop(model, f, cores), cores),
                "Ray Data, 1 worker": (lambda: on_ray(1), 1),
                "Ray Data, 2 workers": (lambda: on_ray(2), 2),
            }
            for name, (run, used) in runs.items():
                seconds, scored = timed(run)
                assert scored == size, (name, scored)
                rows.append({"images": size, "engine": name, "cores": used, "seconds": round(seconds, 2),
                             "images_per_s": round(size / seconds, 1),
                             "images_per_s_per_core": round(size / seconds / used, 1)})  # fmt: skip
                print(rows[-1], flush=True)
            shutil.rmtree(folder)

        one = work / "one"
        write_images(one, 1)
        fixed = {"local instance": fixed_cost(served, one, None, dict(os.environ))}
        with ray_cluster(cpus_per_node=2) as cluster:  # the test suite's: two `ray start` nodes, all stopped after
            fixed["two-node cluster (ray start)"] = fixed_cost(served, one, cluster.address, cluster.env)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report(rows, fixed, cores)


def report(rows: list[dict[str, Any]], fixed: dict[str, float], cores: int) -> None:
    def find(size: int, engine: str) -> dict[str, Any]:
        return next(r for r in rows if r["images"] == size and r["engine"] == engine)

    sizes = sorted({r["images"] for r in rows})
    summary: dict[str, float] = {}
    for size in sizes:
        ray1, ray2, plain = (find(size, e) for e in ("Ray Data, 1 worker", "Ray Data, 2 workers", "plain loop, 1 core"))
        summary[f"{size} images: Ray 2 workers / Ray 1 worker"] = round(ray2["images_per_s"] / ray1["images_per_s"], 2)
        summary[f"{size} images: Ray 2 workers per core / plain loop per core"] = round(
            ray2["images_per_s_per_core"] / plain["images_per_s_per_core"], 2
        )
    for engine in dict.fromkeys(r["engine"] for r in rows):
        if len(sizes) > 1:  # the marginal rate leaves out what a run pays once (Ray's start, the actors' start)
            first, last = find(sizes[0], engine), find(sizes[-1], engine)
            summary[f"time {sizes[-1]} / time {sizes[0]} images: {engine}"] = round(
                last["seconds"] / first["seconds"], 2
            )
            last["marginal_images_per_s"] = round((sizes[-1] - sizes[0]) / (last["seconds"] - first["seconds"]), 1)
    if len(sizes) > 1:
        ray1, ray2, plain = (
            find(sizes[-1], e) for e in ("Ray Data, 1 worker", "Ray Data, 2 workers", "plain loop, 1 core")
        )
        summary["marginal: Ray 2 workers / Ray 1 worker"] = round(
            ray2["marginal_images_per_s"] / ray1["marginal_images_per_s"], 2
        )
        summary["marginal: Ray 1 worker / plain loop 1 core"] = round(
            ray1["marginal_images_per_s"] / plain["marginal_images_per_s"], 2
        )
    machine = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    result = {"machine": machine, "rows": rows, "summary": summary, "fixed_cost_s": fixed}
    out = REPO / "bench" / "results" / "distributed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nBatch inference, Fashion-MNIST PNGs, resnet10t at {IMAGE_SIZE} px ({machine})\n")
    print("| images | engine | cores | seconds | images/s | images/s per core | marginal images/s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['images']} | {r['engine']} | {r['cores']} | {r['seconds']} | {r['images_per_s']} | "
              f"{r['images_per_s_per_core']} | {r.get('marginal_images_per_s', '')} |")  # fmt: skip
    print("\n| ratio | value |\n|---|---:|")
    for key, value in summary.items():
        print(f"| {key} | x{value} |")
    print("\n| Ray's fixed cost (one image, start to result) | seconds |\n|---|---:|")
    for where, seconds in fixed.items():
        print(f"| {where} | {seconds:.1f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.exit(main())
