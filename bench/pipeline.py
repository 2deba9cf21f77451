"""Benchmark: where the demo's wall time goes, and how fast the real training loop is.

1. Runs the demo (init, import, data stages, training pipeline) in a scratch checkout. The demo's wall
   time is import + `dvc repro` of the data stages + `cvops run training`; its orchestration overhead
   is the training command's wall time minus ZenML's step durations (process start, stack set-up,
   DVC's up-to-date check, artifact store, run bookkeeping).
2. Trains the same model on the same prepared images for one epoch through cvops's loop (DataLoader,
   albumentations, progress, metrics) and through a bare torch loop over preloaded tensors.

Usage: python bench/pipeline.py [--repeats 2]
Writes bench/results/pipeline-<dataset>.json and prints a markdown table.
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
from pathlib import Path

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads


def cvops(root: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvops.cli", *args], cwd=root, check=True, capture_output=True)
    return time.perf_counter() - start


def pipeline_split(root: Path, dataset: str) -> dict[str, float]:
    cvops(root, "init")
    import_s = cvops(root, "data", "import", dataset)
    start = time.perf_counter()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "prepare"], cwd=root, env=env, check=True, capture_output=True
    )
    data_stages_s = time.perf_counter() - start
    wall = cvops(root, "run", "training")

    os.environ["ZENML_CONFIG_PATH"] = str(root / ".zen" / "global")
    os.chdir(root)
    from zenml.client import Client

    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    steps = {name: (s.end_time - s.start_time).total_seconds() for name, s in run.steps.items()}
    compute = sum(steps.values())
    demo_wall = import_s + data_stages_s + wall
    return {
        "import_s": import_s,
        "data_stages_s": data_stages_s,
        "training_command_wall_s": wall,
        "demo_wall_s": demo_wall,
        "step_compute_s": compute,
        "overhead_s": wall - compute,
        "overhead_fraction": (wall - compute) / demo_wall,
        **{f"step_{k}_s": v for k, v in steps.items()},
    }


def loop_throughput(root: Path, dataset: str, repeats: int) -> dict[str, float]:
    import torch

    from cvops.config import load_params
    from cvops.data.augment import ImageDataset, augmentation
    from cvops.data.prepare import load_dataset_ref, load_split
    from cvops.tasks import task
    from cvops.training.models import create_model, normalization
    from cvops.training.trainer import TrainingInputs, train_model

    params = load_params(root / "params.yaml")
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"epochs": 1, "freeze_backbone_epochs": 0})}
    )
    ref = load_dataset_ref(root / "data" / "prepared")
    images, labels, _ = load_split(ref, "train")
    val_images, val_labels, _ = load_split(ref, "val")
    device = torch.device("cpu")

    def real() -> float:
        model = create_model(params.train.model, ref.num_classes, params.train.pretrained)
        mean, std = normalization(model)
        inputs = TrainingInputs(
            model,
            ImageDataset(images, labels, mean, std, augmentation(params.train.augment, 0)),
            ImageDataset(val_images[:1], val_labels[:1], mean, std),
            task(ref.task).train.objective(params.train),
        )
        result = train_model(inputs, params.train, seed=0, device=device)
        return result.images_per_second

    def bare() -> float:
        """Same model, optimiser and memory format (channels-last), on tensors normalised in advance."""
        model = create_model(params.train.model, ref.num_classes, params.train.pretrained)
        model.train().to(memory_format=torch.channels_last)
        mean, std = normalization(model)
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        scale = torch.tensor(std).view(1, 3, 1, 1)
        x = ((pixels - torch.tensor(mean).view(1, 3, 1, 1)) / scale).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(labels)
        optimizer = torch.optim.AdamW(model.parameters(), lr=params.train.lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        batch = params.train.batch_size
        start = time.perf_counter()
        seen = 0
        for i in range(0, len(x) - batch + 1, batch):
            optimizer.zero_grad()
            loss_fn(model(x[i : i + batch]), y[i : i + batch]).backward()
            optimizer.step()
            seen += batch
        return seen / (time.perf_counter() - start)

    reals, bares = [], []
    for _ in range(repeats):  # interleaved, best of each: the machine is shared and noisy
        reals.append(real())
        bares.append(bare())
    return {
        "real_loop_img_s": max(reals),
        "bare_loop_img_s": max(bares),
        "real_vs_bare": max(reals) / max(bares),
        "train_images": len(images),
        "image_size": ref.image_size,
        "model": params.train.model,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["elpv"], default="elpv", help="the demo's dataset")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-"))
    try:
        root = scratch / "checkout"
        root.mkdir()
        for name in ("params.yaml", "dvc.yaml"):
            shutil.copy(REPO / name, root / name)
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        split = pipeline_split(root, args.dataset)
        loop = loop_throughput(root, args.dataset, args.repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    import torch

    result = {
        "dataset": args.dataset,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        **split,
        **loop,
    }
    out = REPO / "bench" / "results" / f"pipeline-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        "| dataset | demo wall (import + data stages + training) | step compute | overhead "
        "| real loop | bare loop | real/bare |"
    )
    print("|---|---|---|---|---|---|---|")
    cells = [
        f"{args.dataset} ({loop['model']}, {loop['image_size']}px)",
        f"{split['demo_wall_s']:.0f} s ({split['import_s']:.0f} + {split['data_stages_s']:.0f} + "
        f"{split['training_command_wall_s']:.0f})",
        f"{split['step_compute_s']:.1f} s",
        f"{split['overhead_s']:.1f} s ({split['overhead_fraction']:.0%})",
        f"{loop['real_loop_img_s']:.0f} img/s",
        f"{loop['bare_loop_img_s']:.0f} img/s",
        f"{loop['real_vs_bare']:.0%}",
    ]
    print("| " + " | ".join(cells) + " |")
    print(f"\nmachine: {result['machine']}; JSON: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
