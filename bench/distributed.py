"""Benchmark: batch inference on Ray Data and training on Ray Train, against the in-process engine.

Batch inference (--part batch) scores N Fashion-MNIST images (PNG files, 28x28 grey) with one ONNX model,
five ways, in one run:
- local: cvops's in-process engine (`score_inputs`), onnxruntime on every core;
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

Training (--part training) trains the same resnet10t from scratch at 28 px on TRAIN_PER_CLASS Fashion-MNIST
images per class (prepared by cvops: split, resized) for TRAIN_EPOCHS epochs, batch 64, four ways: in this
process with 1 and with 2 torch threads (`fit`, the local engine), and on Ray Train with 1 and 2 workers of
one CPU each (`fit_on_ray`, a Ray instance of this machine started for the run). Images/s is the training
passes' (the images of every rank over rank 0's time, validation left out); the fixed cost is the time from
the call to the end of the first epoch less one epoch: Ray's start, the workers', the process group's and the
data's way to them.

Usage: python bench/distributed.py [--part batch|training|all] [--sizes 10000 50000]
Needs Debian's dataset-fashion-mnist. Writes bench/results/distributed.json (a part run alone keeps the
other's results) and prints markdown tables.
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

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads
sys.path.insert(0, str(REPO))
from tests.ray_cluster import ray_cluster  # noqa: E402

IMAGE_SIZE = 28
BATCH = 32
TRAIN_PER_CLASS = 1500  # 15,000 images: 10,500 train, 2,250 val, 2,250 test
TRAIN_EPOCHS = 3
OUT = REPO / "bench" / "results" / "distributed.json"


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
    from cvops.export.onnx_model import Preprocessing
    from cvops.export.quantization import export_onnx
    from cvops.registry.artifacts import ServedModel
    from cvops.training.models import create_model, normalization

    model = create_model("resnet10t", 10, "none")
    mean, std = normalization(model)
    preprocessing = Preprocessing(image_size=IMAGE_SIZE, mean=mean, std=std, class_names=[str(i) for i in range(10)])
    path = export_onnx(model, preprocessing, folder / "model.onnx")
    return ServedModel(model_name="bench", version="1", onnx_path=str(path), lineage_id="bench")


def plain_loop(model_path: Path, folder: Path, threads: int) -> int:
    """A hand-written scorer: PIL decode + resize, numpy normalisation, onnxruntime, batches of 32."""
    import onnxruntime as ort
    from PIL import Image

    from cvops.export.onnx_model import read_preprocessing

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


class EpochClock:
    """An `on_epoch` callback (rank 0's, wherever it runs) that appends the time each epoch ended to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, metrics: dict[str, float], epoch: int) -> None:
        with self.path.open("a") as out:
            out.write(f"{time.time()}\n")


def _all_reduce_worker(rank: int, port: int, numel: int, steps: int, out: Path) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    gradients = torch.ones(numel)
    dist.all_reduce(gradients)  # the connections made
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        dist.all_reduce(gradients)
    if rank == 0:
        out.write_text(str((time.perf_counter() - start) / steps))
    dist.destroy_process_group()


def all_reduce_ms(numel: int, work: Path, steps: int = 50) -> float:
    """Milliseconds for one gloo all_reduce of `numel` floats between two processes of this machine, one
    thread each: what DDP sends every step (it overlaps part of it with the backward pass)."""
    import torch.multiprocessing as mp

    from tests.server import free_port

    out = work / "all_reduce.txt"
    mp.spawn(_all_reduce_worker, args=(free_port(), numel, steps, out), nprocs=2)
    return float(out.read_text()) * 1000


def train_rows(work: Path) -> list[dict[str, Any]]:
    """Training images/s and fixed cost, in process (1 and 2 threads) and on Ray Train (1 and 2 workers)."""
    import torch

    from cvops.config import Params
    from cvops.data.manifest import import_source
    from cvops.data.prepare import load_dataset_ref, prepare_dataset
    from cvops.data.sources import fashion_mnist_source
    from cvops.training.on_ray import fit_on_ray
    from cvops.training.trainer import fit

    raw, prepared = work / "raw", work / "prepared"
    import_source(fashion_mnist_source(limit=TRAIN_PER_CLASS), raw)
    base = Params.model_validate(
        {
            "prepare": {"image_size": IMAGE_SIZE},
            "train": {
                "model": "resnet10t",
                "pretrained": "none",
                "epochs": TRAIN_EPOCHS,
                "batch_size": 64,
                "early_stopping_patience": TRAIN_EPOCHS,
                "augment": {"hflip": 0},
            },
            "base": {"device": "cpu"},
        }
    )
    prepare_dataset(raw, raw, prepared, base.prepare, base.base.seed)
    ref = load_dataset_ref(prepared)
    runs: dict[str, tuple[str, int, int, int]] = {  # name: (engine, threads or workers, cores, batch size)
        "in process, 1 thread": ("local", 1, 1, 64),
        "in process, 1 thread, batch 32 (a rank's share)": ("local", 1, 1, 32),
        "in process, 2 threads": ("local", 2, 2, 64),
        "Ray Train, 1 worker": ("ray", 1, 1, 64),
        "Ray Train, 2 workers (DDP)": ("ray", 2, 2, 64),
    }
    rows = []
    for n, (name, (engine, count, cores, batch)) in enumerate(runs.items()):
        clock = EpochClock(work / f"epochs-{n}.txt")
        start = time.time()
        if engine == "local":
            torch.set_num_threads(count)
            result = fit(
                ref,
                base.model_copy(update={"train": base.train.model_copy(update={"batch_size": batch})}),
                on_epoch=clock,
            )
        else:
            distributed = {"engine": "ray", "train_workers": count, "cpus_per_worker": 1.0}
            params = base.model_copy(update={"distributed": base.distributed.model_validate(distributed)})
            result = fit_on_ray(ref, params, on_epoch=clock)
        ends = [float(line) for line in clock.path.read_text().split()]
        epoch_s = (ends[-1] - ends[0]) / (len(ends) - 1)  # an epoch once started: training and validation
        rows.append(
            {
                "engine": name,
                "cores": cores,
                "world_size": result.world_size,
                "epochs": len(ends),
                "train_images_per_s": round(result.images_per_second, 1),
                "train_images_per_s_per_core": round(result.images_per_second / cores, 1),
                "epoch_s": round(epoch_s, 2),
                "fixed_cost_s": round(ends[0] - start - epoch_s, 1),
                "seconds": round(ends[-1] - start, 1),
                "val_accuracy": round(result.history[-1]["val_accuracy"], 4),
            }
        )
        print(rows[-1], flush=True)
    from cvops.training.models import create_model

    numel = sum(p.numel() for p in create_model("resnet10t", ref.num_classes, "none").parameters())
    steps = sum(ref.counts["train"].values()) // base.train.batch_size  # per rank and epoch (drop_last)
    reduce_ms = all_reduce_ms(numel, work)
    rows.append(
        {
            "engine": "gloo all_reduce of the gradients, 2 processes",
            "floats": numel,
            "ms_per_step": round(reduce_ms, 2),
            "steps_per_epoch": steps,
            "s_per_epoch": round(reduce_ms * steps / 1000, 2),
        }
    )
    print(rows[-1], flush=True)
    return rows


def fixed_cost(served: Any, one: Path, address: str | None, env: dict[str, str]) -> float:
    """Seconds from a fresh process's call to its one-image result on Ray (a new process: Ray keeps its
    connection and token for the life of a process)."""
    code = (
        "import sys, time; from cvops.registry.artifacts import ServedModel; from cvops.config import DetectParams, "
        "DistributedParams, ServeParams; from cvops.serving.on_ray import score_on_ray; start = time.perf_counter(); "
        "score_on_ray(ServedModel.model_validate_json(sys.argv[1]), sys.argv[2], ServeParams(), "
        "DistributedParams(engine='ray', batch_workers=1, address=sys.argv[3] or None), DetectParams().served); "
        "print(time.perf_counter() - start)"
    )
    found = subprocess.run(
        [sys.executable, "-c", code, served.model_dump_json(), str(one), address or ""],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(found.stdout.split()[-1])


def timed(run: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    rows = run()
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["batch", "training", "all"], default="all")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    result["machine"] = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    if args.part in ("batch", "all"):
        result.update(batch_results(args.sizes, cores))
    if args.part in ("training", "all"):
        work = Path(tempfile.mkdtemp(prefix="cvops-bench-training-"))
        try:
            result["training"] = train_rows(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"\nwrote {OUT}")


def batch_results(sizes: list[int], cores: int) -> dict[str, Any]:
    """The batch-inference rows, their ratios and Ray's fixed cost."""
    from cvops.config import DetectParams, DistributedParams, ServeParams
    from cvops.serving.batch import score_inputs
    from cvops.serving.loading import load_served
    from cvops.serving.on_ray import score_on_ray

    work = Path(tempfile.mkdtemp(prefix="cvops-bench-distributed-"))
    serve, post = ServeParams(max_batch_images=BATCH), DetectParams().served
    try:
        served = export_model(work)
        model = Path(served.onnx_path)
        rows: list[dict[str, Any]] = []
        for size in sizes:
            folder = work / f"images-{size}"
            write_images(folder, size)

            def local(f: Path = folder) -> int:
                return len(score_inputs(load_served(served, BATCH, post), str(f), serve.max_image_pixels))

            def on_ray(workers: int, f: Path = folder) -> int:
                distributed = DistributedParams(engine="ray", batch_workers=workers, cpus_per_worker=1.0)
                return len(score_on_ray(served, str(f), serve, distributed, post))

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
                rows.append(
                    {
                        "images": size,
                        "engine": name,
                        "cores": used,
                        "seconds": round(seconds, 2),
                        "images_per_s": round(size / seconds, 1),
                        "images_per_s_per_core": round(size / seconds / used, 1),
                    }
                )
                print(rows[-1], flush=True)
            shutil.rmtree(folder)

        one = work / "one"
        write_images(one, 1)
        fixed = {"local instance": fixed_cost(served, one, None, dict(os.environ))}
        with ray_cluster(cpus_per_node=2) as cluster:  # the test suite's: two `ray start` nodes, all stopped after
            fixed["two-node cluster (ray start)"] = fixed_cost(served, one, cluster.address, cluster.env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"rows": rows, "summary": ratios(rows), "fixed_cost_s": fixed}


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The goal's ratios, per size and marginal; adds each engine's marginal rate to its largest size's row."""

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
    return summary


def report(result: dict[str, Any]) -> None:
    machine = result["machine"]
    if "rows" in result:
        print(f"\nBatch inference, Fashion-MNIST PNGs, resnet10t at {IMAGE_SIZE} px ({machine})\n")
        print("| images | engine | cores | seconds | images/s | images/s per core | marginal images/s |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for r in result["rows"]:
            print(
                f"| {r['images']} | {r['engine']} | {r['cores']} | {r['seconds']} | {r['images_per_s']} | "
                f"{r['images_per_s_per_core']} | {r.get('marginal_images_per_s', '')} |"
            )
        print("\n| ratio | value |\n|---|---:|")
        for key, value in result["summary"].items():
            print(f"| {key} | x{value} |")
        print("\n| Ray's fixed cost (one image, start to result) | seconds |\n|---|---:|")
        for where, seconds in result["fixed_cost_s"].items():
            print(f"| {where} | {seconds:.1f} |")
    if "training" in result:
        rows = result["training"]
        print(f"\nTraining, resnet10t from scratch at {IMAGE_SIZE} px, Fashion-MNIST ({machine})\n")
        print("| engine | cores | train images/s | per core | epoch (s) | fixed cost (s) | val accuracy |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        trained, (reduce,) = [r for r in rows if "floats" not in r], [r for r in rows if "floats" in r]
        for r in trained:
            print(
                f"| {r['engine']} | {r['cores']} | {r['train_images_per_s']} | {r['train_images_per_s_per_core']} "
                f"| {r['epoch_s']} | {r['fixed_cost_s']} | {r['val_accuracy']} |"
            )
        by = {r["engine"]: r["train_images_per_s"] for r in trained}
        ray1, ray2 = by["Ray Train, 1 worker"], by["Ray Train, 2 workers (DDP)"]
        half = by["in process, 1 thread, batch 32 (a rank's share)"]
        print("\n| ratio | value |\n|---|---:|")
        print(f"| scaling efficiency: Ray 2 workers / (2 x Ray 1 worker) | {ray2 / (2 * ray1):.2f} |")
        print(f"| Ray 2 workers / (2 x in process, 1 thread, batch 32) | {ray2 / (2 * half):.2f} |")
        print(f"| Ray 1 worker / in process 1 thread | {ray1 / by['in process, 1 thread']:.2f} |")
        print(f"| Ray 2 workers / in process 2 threads | {ray2 / by['in process, 2 threads']:.2f} |")
        print(f"| in process: 2 threads / 1 thread | {by['in process, 2 threads'] / by['in process, 1 thread']:.2f} |")
        print(
            f"\nDDP's communication: one gloo all_reduce of the {reduce['floats']:,} gradient floats between two "
            f"processes takes {reduce['ms_per_step']} ms; x {reduce['steps_per_epoch']} steps = "
            f"{reduce['s_per_epoch']} s per epoch."
        )


if __name__ == "__main__":
    sys.exit(main())
