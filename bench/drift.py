"""Benchmark: drift detection power and false-alarm rate, and the cost of monitoring, on this machine.

The model's reference is built here, exactly as the training pipeline does (statistics of the train and
validation splits, the model's view of the validation split). The pool of "live" images is the test split
(in neither the training nor the reference), each image shifted once per shift type at --severity. For
every shift and window size, --reps windows are drawn (seeded, without replacement; a window larger than
the pool is not measured, since repeated images would read as drift) and checked with cvops's drift test;
the alarm rate is the false-alarm rate for `none` and the detection power for the others. Windows under
monitor.min_samples are tested anyway (min_samples lowered to the window), to show what they could detect.

Two sources of model and images:
  --dataset checkout (default)  the checkout's prepared data (ELPV after `make demo`) and a registered
                                version; its test split (393 images) is too small for 1,000-image windows
  --dataset fashion-mnist       a scratch checkout: --limit-per-class images per class of Fashion-MNIST,
                                30% of them in the test split, and a small CNN trained here for 3 epochs

Usage: python bench/drift.py [--dataset checkout|fashion-mnist] [--version V] [--reps 50] [--severity 0.3]
Writes bench/results/drift-<dataset>[-severity<S>].json and prints a markdown table.
"""

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads
DEFAULT_SEVERITY = 0.3


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def checkout_model(version: str | None):  # type: ignore[no-untyped-def]
    """The checkout's prepared dataset and the shipped ONNX file of a registered version."""
    from checkout import registered_version

    from cvops.data.prepare import load_dataset_ref
    from cvops.registry.artifacts import resolve

    project, params, registry, info = registered_version(version)
    served = resolve(registry, info.version, project.onnx_cache)
    return load_dataset_ref(project.prepared_dir), project.raw_dir, Path(served.onnx_path), f"v{served.version}", params


def fashion_mnist_model(limit: int, scratch: Path):  # type: ignore[no-untyped-def]
    """A scratch Fashion-MNIST checkout (import, validate, prepare) and a small CNN trained and exported here."""
    from cvops.config import load_params
    from cvops.data.manifest import import_source
    from cvops.data.prepare import prepare_dataset
    from cvops.data.sources import fashion_mnist_source
    from cvops.data.validation import validate_dataset
    from cvops.export.quantization import quantize
    from cvops.training.trainer import fit

    # the small run of the digits demo and the tests, at Fashion-MNIST's 28 px (32), with a larger test split
    overrides = ["prepare.image_size=32", "prepare.test_fraction=0.3", "train.epochs=3"]
    params = load_params(REPO / "params.yaml", overrides, overlay=REPO / "overlays" / "digits.yaml")
    raw, validated, prepared = scratch / "raw", scratch / "validated", scratch / "prepared"
    import_source(fashion_mnist_source(limit=limit), raw)
    validate_dataset(raw, validated, params.validation)
    ref = prepare_dataset(validated, raw, prepared, params.prepare, params.base.seed)
    model = fit(ref, params).model
    report = quantize(model, ref, scratch / "onnx", params)
    return ref, raw, Path(report.shipped_artifact.path), f"resnet10t {report.shipped}", params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["checkout", "fashion-mnist"], default="checkout")
    parser.add_argument("--version", help="registered version (checkout; default: champion, else the newest)")
    parser.add_argument("--limit-per-class", type=int, default=1000, help="fashion-mnist images per class")
    parser.add_argument("--reps", type=int, default=50, help="windows per shift and size")
    parser.add_argument("--severity", type=float, default=DEFAULT_SEVERITY)
    parser.add_argument("--sizes", default="50,200,1000")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from PIL import Image
    from tqdm import tqdm

    from cvops.data.prepare import load_split
    from cvops.monitoring.drift import detect_drift
    from cvops.monitoring.reference import build_reference, load_reference
    from cvops.monitoring.shifts import SHIFTS, apply_shift
    from cvops.serving.predictor import Predictor, decode_image
    from cvops.serving.projection import PROJECTION_FILE

    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-drift-"))
    if args.dataset == "checkout":
        ref, raw_dir, onnx_path, model_name, params = checkout_model(args.version)
    else:
        ref, raw_dir, onnx_path, model_name, params = fashion_mnist_model(args.limit_per_class, scratch)

    start = time.perf_counter()
    summary = build_reference(
        onnx_path, ref, scratch / "reference", params.monitor.embedding_dims, params.detect.served
    )
    reference_seconds = time.perf_counter() - start
    reference, projection = load_reference(scratch / "reference")
    predictor = Predictor(
        onnx_path,
        "bench",
        "1",
        "bench",
        params.serve.max_batch_images,
        projection_path=scratch / "reference" / PROJECTION_FILE,
    )

    pool = load_split(ref, "test")[2]
    pre, max_pixels = predictor.preprocessing, params.serve.max_image_pixels
    rng = np.random.default_rng(params.base.seed)
    rows: dict[str, pd.DataFrame] = {}
    score_seconds = 0.0
    for shift in SHIFTS:
        scored = []
        start = time.perf_counter()
        for begin in tqdm(range(0, len(pool), 64), desc=f"score {shift}", unit="batch", disable=None):
            decoded = []
            for path in pool["path"][begin : begin + 64]:
                with Image.open(raw_dir / str(path)) as image:
                    buffer = io.BytesIO()
                    apply_shift(image, shift, args.severity, rng).save(buffer, format="PNG")
                decoded.append(decode_image(buffer.getvalue(), pre.image_size, max_pixels, pre.resize, pre.decoder))
            probabilities, embeddings = predictor.predict(np.stack([d.pixels for d in decoded]))
            scored += [predictor.log_row(d, p, e) for d, p, e in zip(decoded, probabilities, embeddings, strict=True)]
        if shift == "none":
            score_seconds = time.perf_counter() - start
        rows[shift] = pd.DataFrame(scored)

    results = []
    check_seconds: dict[int, list[float]] = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    for shift in SHIFTS:
        for n in [n for n in sizes if n <= len(pool)]:  # repeated images would read as drift
            alarms = 0
            for rep in tqdm(range(args.reps), desc=f"{shift} n={n}", disable=None):
                chosen = rng.choice(len(rows[shift]), size=n, replace=False)
                start = time.perf_counter()
                window = rows[shift].iloc[chosen].reset_index(drop=True)
                monitor = params.monitor.model_copy(update={"min_samples": min(n, params.monitor.min_samples)})
                verdict = detect_drift(
                    reference, projection.fingerprint, window, "1", monitor, scratch / "reports" / f"{shift}-{n}-{rep}"
                )
                check_seconds.setdefault(n, []).append(time.perf_counter() - start)
                alarms += verdict.status == "drift"
            low, high = wilson(alarms, args.reps)
            results.append(
                {
                    "shift": shift,
                    "window": n,
                    "alarms": alarms,
                    "reps": args.reps,
                    "rate": alarms / args.reps,
                    "ci95": [round(low, 3), round(high, 3)],
                }
            )

    costs = {
        "reference_build_s": round(reference_seconds, 2),
        "reference_rows": summary.rows,
        "reference_model_rows": summary.model_rows,
        "score_and_features_per_1000_s": round(score_seconds / len(pool) * 1000, 2),
        "drift_check_s_by_window": {n: round(float(np.median(t)), 3) for n, t in check_seconds.items()},
    }
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "dataset": ref.model_dump(include={"class_names", "image_size", "data_version"}),
        "model": model_name,
        "shipped": onnx_path.name,
        "severity": args.severity,
        "pool": len(pool),
        "monitor": params.monitor.model_dump(),
        "results": results,
        "costs": costs,
    }
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    suffix = "" if args.severity == DEFAULT_SEVERITY else f"-severity{args.severity:g}"
    (REPO / "bench" / "results" / f"drift-{args.dataset}{suffix}.json").write_text(
        json.dumps(out, indent=2, default=str)
    )

    print(
        f"\n{args.dataset}: model {model_name} ({onnx_path.name}), pool {len(pool)} test images, "
        f"reference {summary.rows} train+val images ({summary.model_rows} with the model's view), "
        f"severity {args.severity}, {args.reps} windows a cell\n"
    )
    print("| shift | " + " | ".join(f"n={n}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for shift in SHIFTS:
        cells = [r for r in results if r["shift"] == shift]
        label = "none (false alarms)" if shift == "none" else f"{shift} (power)"
        measured = {r["window"]: f"{r['rate']:.0%} [{r['ci95'][0]:.0%}-{r['ci95'][1]:.0%}]" for r in cells}
        rates = [measured.get(n, "n/a (pool too small)") for n in sizes]
        print(f"| {label} | " + " | ".join(rates) + " |")
    print(
        f"\nmonitoring cost: reference of {summary.rows} images built in {costs['reference_build_s']} s; "
        f"scoring + features {costs['score_and_features_per_1000_s']} s per 1,000 images; drift check (Evidently + "
        f"reports) {costs['drift_check_s_by_window']} s by window size"
    )


if __name__ == "__main__":
    main()
