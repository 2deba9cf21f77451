"""Benchmark: how accuracy on shifted production traffic recovers per labelled image.

A scratch digits checkout (the small run of overlays/digits.yaml; 30% of each class held out of every split as
production traffic no model has seen), its first version the champion. Production: the held-out images
rotated by --severity x 90 degrees (27 degrees at 0.3, which cuts the digits champion to about two thirds
right: brightness, the obvious shift, is absorbed by the training augmentation), scored with capture on.
Then rounds, each command as a user runs it: `cvops labels queue` for the next images until 50, 100, 200
are labelled, labels from the truth file, `cvops labels import` (a new data version), `cvops run training`.
Each version is scored on images no round labels or trains on: the test split rotated the same way (the
shifted traffic) and as it is (what must not regress).

The peer is the labelling a user would otherwise do: the same rounds with images picked at random
(`--strategy random`) against cvops's mixed queue (least confident, spread over the embedding space, and a
random share).

--shifted-share 0.3 makes only that share of the production traffic rotated (the rest as it is): a shift that
reaches part of the traffic, where the labels a queue spends on unshifted images are wasted.

Usage: python bench/loop.py [--budgets 50,100,200] [--strategies mixed,random] [--severity 0.3] [--shifted-share 1]
Writes bench/results/loop[-shifted<S>].json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()


def cvops(root: Path, *args: str, allowed: tuple[int, ...] = (0,)) -> str:
    own = {k: v for k, v in os.environ.items() if not k.startswith(("CVOPS_", "ZENML_", "MLFLOW_", "BENTOML_"))}
    result = subprocess.run(
        [sys.executable, "-m", "cvops.cli", *args], cwd=root, capture_output=True, text=True, env=own
    )
    if result.returncode not in allowed:
        raise SystemExit(f"cvops {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def checkout(scratch: Path, severity: float, shifted: float) -> Path:
    """A digits checkout with a champion and 500 captured production answers, a `shifted` share of them rotated
    (truth in truth.csv)."""
    from cvops.config import load_params

    root = scratch / "project"
    root.mkdir(parents=True)
    overrides = ["registry.require_approval=false", "prepare.holdout_fraction=0.3", "serve.capture.fraction=1.0"]
    params = load_params(REPO / "params.yaml", overrides, overlay=REPO / "overlays" / "digits.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(params.as_params(), sort_keys=False))
    for name in ("dvc.yaml", ".gitignore"):
        (root / name).write_text((REPO / name).read_text())
    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "c"]):
        subprocess.run(["git", *command], cwd=root, check=True)
    cvops(root, "init")
    cvops(root, "run", "training")
    rotated = round(500 * shifted)
    for seed, shift, count in ((1, "rotate", rotated), (2, "none", 500 - rotated)):
        if count:
            cvops(
                root,
                "traffic",
                "--offline",
                "--source",
                "holdout",
                "--shift",
                shift,
                "--severity",
                str(severity),
                "--n",
                str(count),
                "--seed",
                str(seed),
                "--truth-out",
                str(root / f"truth-{shift}.csv"),
            )
    truths = [pd.read_csv(path, dtype=str) for path in sorted(root.glob("truth-*.csv"))]
    pd.concat(truths).to_csv(root / "truth.csv", index=False)
    return root


def evaluation_sets(root: Path, severity: float) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The test split's images rotated (shifted traffic) and as they are, with their labels."""
    from cvops.config import Project
    from cvops.data.prepare import load_dataset_ref, load_split
    from cvops.monitoring.traffic import traffic_images
    from cvops.serving.predictor import decode_image

    project = Project(root)
    ref = load_dataset_ref(project.prepared_dir)
    count = len(load_split(ref, "test")[1])
    sets = {}
    for name, shift in (("rotated", "rotate"), ("unshifted", "none")):
        # every test image once: a permutation when n equals the split's size
        items = list(traffic_images(ref, project.raw_dir, "test", shift, severity, count, seed=1))
        pixels = np.stack(
            [decode_image(data, ref.image_size, 10**8, ref.resize, ref.decoder).pixels for data, _ in items]
        )
        sets[name] = (pixels, [label for _, label in items])
    return sets


def accuracy(root: Path, version: str, sets: dict[str, tuple[np.ndarray, list[str]]]) -> dict[str, float]:
    from cvops.config import Project
    from cvops.registry.artifacts import resolve
    from cvops.registry.model_registry import ModelRegistry
    from cvops.registry.tracking import use_project_store
    from cvops.serving.loading import load_served

    project = Project(root)
    use_project_store(project, "cvops")
    served = resolve(ModelRegistry.of(project, "cvops-classifier"), version, project.onnx_cache)
    predictor = load_served(served, 64, project.params().detect.served)
    names = predictor.preprocessing.class_names
    return {
        name: float(
            np.mean(
                [
                    names[i] == label
                    for i, label in zip(predictor.predict(pixels)[0].argmax(axis=1), labels, strict=True)
                ]
            )
        )
        for name, (pixels, labels) in sets.items()
    }


def rounds(root: Path, strategy: str, budgets: list[int], sets: dict) -> list[dict]:  # type: ignore[type-arg]
    truth = pd.read_csv(root / "truth.csv", dtype=str)
    rows = [{"strategy": strategy, "labelled": 0, "version": "1", "seconds": 0.0, **accuracy(root, "1", sets)}]
    labelled, version = 0, 1
    for budget in budgets:
        start = time.perf_counter()
        batch = root / "labels" / f"{strategy}-{budget}"
        cvops(root, "labels", "queue", "--n", str(budget - labelled), "--strategy", strategy, "--output", str(batch))
        tasks = pd.read_csv(batch / "tasks.csv", dtype=str)
        tasks[["request_id"]].merge(truth, on="request_id").to_csv(batch / "labelled.csv", index=False)
        cvops(root, "labels", "import", str(batch / "labelled.csv"))
        cvops(root, "run", "training", allowed=(0, 7))  # 7: registered, but it failed its gate (still scored)
        labelled, version = budget, version + 1
        seconds = round(time.perf_counter() - start, 1)
        rows.append(
            {
                "strategy": strategy,
                "labelled": labelled,
                "version": str(version),
                "seconds": seconds,
                **accuracy(root, str(version), sets),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="50,100,200")
    parser.add_argument("--strategies", default="mixed,random")
    parser.add_argument("--severity", type=float, default=0.3)
    parser.add_argument("--shifted-share", type=float, default=1.0, help="of the production traffic, rotated")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    results = []
    for strategy in args.strategies.split(","):
        with tempfile.TemporaryDirectory(prefix=f"cvops-loop-{strategy}-") as scratch:
            root = checkout(Path(scratch), args.severity, args.shifted_share)
            results += rounds(root, strategy, budgets, evaluation_sets(root, args.severity))
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "severity": args.severity,
        "shift": "rotate",
        "shifted_share": args.shifted_share,
        "results": results,
    }
    suffix = "" if args.shifted_share == 1.0 else f"-shifted{args.shifted_share:g}"
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / f"loop{suffix}.json").write_text(json.dumps(out, indent=2))
    print(
        f"\ndigits, production traffic {args.shifted_share:.0%} rotated (severity {args.severity}); accuracy on "
        f"the test split, rotated and not; {out['machine']}"
    )
    print("| labelled images | strategy | version | rotated | unshifted | round (s) |\n|---|---|---|---|---|---|")
    for row in sorted(results, key=lambda r: (r["labelled"], r["strategy"])):
        print(
            f"| {row['labelled']} | {row['strategy']} | v{row['version']} | {row['rotated']:.3f} | "
            f"{row['unshifted']:.3f} | {row['seconds']} |"
        )


if __name__ == "__main__":
    main()
