"""Benchmark: drift detection power and false-alarm rate, and the cost of monitoring, on this machine.

The model is a registered version of the checkout (default: the champion, else the newest version); its
reference is built here from the train split, exactly as the training pipeline does. The pool of "live"
images is the validation + test splits (images the model never trained on), each shifted once per shift
type at --severity. For every shift and window size, --reps windows are drawn (seeded; without
replacement when the pool is large enough, else with) and checked with cvops's drift test; the alarm
rate is the false-alarm rate for `none` and the detection power for the others.

Usage: python bench/drift.py [--version V] [--reps 50] [--severity 0.3] [--sizes 50,200,1000]
Needs the checkout's prepared data and a registered version (`make demo`).
Writes bench/results/drift.json and prints a markdown table.
"""

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="registered version (default: champion, else the newest)")
    parser.add_argument("--reps", type=int, default=50, help="windows per shift and size")
    parser.add_argument("--severity", type=float, default=0.3)
    parser.add_argument("--sizes", default="50,200,1000")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from PIL import Image
    from tqdm import tqdm

    from cvops.config import Project
    from cvops.data.prepare import load_dataset_ref, load_split
    from cvops.monitoring.drift import detect_drift
    from cvops.monitoring.reference import build_reference, load_reference
    from cvops.monitoring.shifts import SHIFTS, apply_shift
    from cvops.registry import ModelRegistry
    from cvops.serving.predictor import Predictor, decode_image
    from cvops.serving.source import resolve
    from cvops.stack import configure_environment
    from cvops.tracking import use_project_store

    project = Project.find(REPO)
    configure_environment(project)
    params = project.params()
    use_project_store(project, params.mlflow.experiment)
    registry = ModelRegistry(params.registry.model_name, project.registry_lock)
    versions = registry.versions()
    if not versions:
        raise SystemExit("no registered version: run `make demo` first")
    selector = args.version or ("champion" if registry.alias("champion") else versions[0].version)
    served = resolve(registry, str(selector), project.bentoml_home / "onnx")
    ref = load_dataset_ref(project.prepared_dir)
    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-drift-"))

    start = time.perf_counter()
    summary = build_reference(Path(served.onnx_path), ref, scratch / "reference", params.monitor.embedding_dims)
    reference_seconds = time.perf_counter() - start
    reference, _ = load_reference(scratch / "reference")
    predictor = Predictor(Path(served.onnx_path), served.model_name, served.version, served.lineage_id,
                          projection_path=scratch / "reference" / "projection.npz")  # fmt: skip

    pool = pd.concat([load_split(ref, split)[2] for split in ("val", "test")], ignore_index=True)
    size = predictor.preprocessing.image_size
    rng = np.random.default_rng(params.base.seed)
    rows: dict[str, pd.DataFrame] = {}
    score_seconds = 0.0
    for shift in SHIFTS:
        scored = []
        start = time.perf_counter()
        for begin in tqdm(range(0, len(pool), 64), desc=f"score {shift}", unit="batch", disable=None):
            decoded = []
            for path in pool["path"][begin : begin + 64]:
                with Image.open(project.raw_dir / str(path)) as image:
                    buffer = io.BytesIO()
                    apply_shift(image, shift, args.severity, rng).save(buffer, format="PNG")
                decoded.append(decode_image(buffer.getvalue(), size, params.serve.max_image_pixels))
            probabilities, embeddings = predictor.predict(np.stack([d.pixels for d in decoded]))
            scored += [predictor.log_row(d, p, e) for d, p, e in zip(decoded, probabilities, embeddings, strict=True)]
        if shift == "none":
            score_seconds = time.perf_counter() - start
        rows[shift] = pd.DataFrame(scored)

    results = []
    check_seconds: dict[int, list[float]] = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    for shift in SHIFTS:
        for n in sizes:
            alarms = 0
            for rep in tqdm(range(args.reps), desc=f"{shift} n={n}", disable=None):
                chosen = rng.choice(len(rows[shift]), size=n, replace=n > len(rows[shift]))
                start = time.perf_counter()
                verdict = detect_drift(reference, rows[shift].iloc[chosen].reset_index(drop=True), served.version,
                                       params.monitor, scratch / "reports" / f"{shift}-{n}-{rep}")  # fmt: skip
                check_seconds.setdefault(n, []).append(time.perf_counter() - start)
                alarms += verdict.status == "drift"
            low, high = wilson(alarms, args.reps)
            results.append({"shift": shift, "window": n, "alarms": alarms, "reps": args.reps,
                            "rate": alarms / args.reps, "ci95": [round(low, 3), round(high, 3)],
                            "with_replacement": n > len(pool)})  # fmt: skip

    costs = {
        "reference_build_s": round(reference_seconds, 2),
        "reference_rows": summary.rows,
        "score_and_features_per_1000_s": round(score_seconds / len(pool) * 1000, 2),
        "drift_check_s_by_window": {n: round(float(np.median(t)), 3) for n, t in check_seconds.items()},
    }
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "dataset": ref.model_dump(include={"class_names", "image_size", "data_version"}),
        "model_version": served.version, "shipped": Path(served.onnx_path).name, "severity": args.severity,
        "pool": len(pool), "monitor": params.monitor.model_dump(), "results": results, "costs": costs,
    }  # fmt: skip
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "drift.json").write_text(json.dumps(out, indent=2, default=str))

    print(f"\nmodel version {served.version} ({Path(served.onnx_path).name}), pool {len(pool)} val+test images, "
          f"reference {summary.rows} train images, severity {args.severity}, {args.reps} windows a cell\n")  # fmt: skip
    print("| shift | " + " | ".join(f"n={n}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for shift in SHIFTS:
        cells = [r for r in results if r["shift"] == shift]
        label = "none (false alarms)" if shift == "none" else f"{shift} (power)"
        rates = [f"{r['rate']:.0%} [{r['ci95'][0]:.0%}-{r['ci95'][1]:.0%}]" for r in cells]
        print(f"| {label} | " + " | ".join(rates) + " |")
    print(f"\nmonitoring cost: reference of {summary.rows} images built in {costs['reference_build_s']} s; "
          f"scoring + features {costs['score_and_features_per_1000_s']} s per 1,000 images; drift check (Evidently + "
          f"reports) {costs['drift_check_s_by_window']} s by window size")  # fmt: skip


if __name__ == "__main__":
    main()
