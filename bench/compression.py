"""Benchmark: what each compression technique buys on ELPV — the trained model (params.yaml: train.*) as ONNX fp32
and int8, the same model pruned at 30% and at 50% of its channels and fine-tuned (prune.fine_tune_epochs), each
pruned model's int8 file, and the distilled student (distill.*) as fp32 and int8; per seed, what cvops ships.

Per file: test accuracy with its 95% bootstrap interval, the paired difference against the fp32 file on the
same test images (with its interval: non-inferiority within 2 points needs its low end above -0.02), size, and
batch-1 and batch-32 latency on one thread. The latencies come from one interleaved measurement of every file of
a seed (cvops/timing.py: calls in turns, the order reversed every turn), and the speed-ups from the paired calls.
"Ships" is what cvops's rule picked in the pipeline's own step, with params.yaml's prune limits, for each ratio.

The data split is the checkout's (prepared once, base.seed); the seeds vary the training, pruning and
fine-tuning only.

Usage: python bench/compression.py [--seeds 42 43 44] [--ratios 0.3 0.5] [--overlay overlays/digits.yaml]
Needs the prepared ELPV data of the checkout (`make demo`); with `--overlay`, the data the overlay's run prepared
(`make demo DATASET=digits` and `--overlay overlays/digits.yaml`: a quick check of the script). Writes
bench/results/compression.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads


def files_of(report: Any, prefix: str) -> dict[str, str]:
    """The report's files, named for the table: `prefix` fp32 / int8 (the unpruned), or pruned ones."""
    names = {"onnx-fp32": "fp32", "onnx-int8": "int8", "onnx-pruned-fp32": "pruned", "onnx-pruned-int8": "pruned+int8"}
    return {f"{prefix}{names[m.format]}": m.path for m in report.candidates()}


def one_seed(seed: int, ratios: list[float], ref: Any, base: Any, scratch: Path) -> dict[str, Any]:
    """Train, compress every way, and measure every file of one seed together."""
    import numpy as np

    from cvops.data.prepare import load_split
    from cvops.data.preprocess import model_inputs
    from cvops.evaluation.statistics import bootstrap_interval, paired_bootstrap_difference
    from cvops.export.onnx_model import predict_logits, read_preprocessing, session
    from cvops.export.quantization import quantize
    from cvops.timing import interleaved_calls, latency, ratio
    from cvops.training.distillation import distill
    from cvops.training.trainer import fit

    params = base.model_copy(update={"base": base.base.model_copy(update={"seed": seed})})
    started = time.perf_counter()
    trained = fit(ref, params)
    seconds = {"train": time.perf_counter() - started}
    files: dict[str, str] = {}
    shipped: dict[str, str] = {}
    for share in ratios:
        pruning = params.prune.model_copy(update={"enabled": True, "ratio": share})
        started = time.perf_counter()
        report = quantize(trained.model, ref, scratch / f"{seed}-{share}", params.model_copy(update={"prune": pruning}))
        seconds[f"prune {share:.0%}"] = time.perf_counter() - started
        named = files_of(report, "")
        files.setdefault("fp32", named["fp32"])
        files.setdefault("int8", named["int8"])
        files[f"pruned {share:.0%}"] = named["pruned"]
        files[f"pruned {share:.0%}+int8"] = named["pruned+int8"]
        shipped[f"{share:.0%}"] = report.shipped
    started = time.perf_counter()
    student = distill(ref, params, trained.model)
    seconds["distill"] = time.perf_counter() - started
    student_report = quantize(student.model, ref, scratch / f"{seed}-student", params.student())
    files["student"] = files_of(student_report, "")["fp32"]
    files["student+int8"] = files_of(student_report, "")["int8"]

    images, labels, _ = load_split(ref, "test")
    measure = params.measure
    sessions, correct, inputs = {}, {}, {}
    for name, path in files.items():
        pre = read_preprocessing(Path(path))
        inputs[name] = model_inputs(images, pre.mean, pre.std)
        sessions[name] = session(Path(path), measure.threads)
        correct[name] = predict_logits(sessions[name], inputs[name]).argmax(axis=1) == labels
    b1 = interleaved_calls(
        {n: (lambda n=n: sessions[n].run(None, {"image": inputs[n][:1]})) for n in files}, measure.runs
    )
    b32_inputs = {n: np.resize(inputs[n], (32, *inputs[n].shape[1:])) for n in files}
    b32 = interleaved_calls(
        {n: (lambda n=n: sessions[n].run(None, {"image": b32_inputs[n]})) for n in files}, measure.batch_runs
    )
    rows = []
    for name, path in files.items():
        accuracy = float(correct[name].mean())
        low, high = bootstrap_interval(
            labels, np.where(correct[name], labels, -1), lambda t, p: float(np.mean(t == p)), seed=seed
        )
        difference, diff_low, diff_high = paired_bootstrap_difference(correct[name], correct["fp32"], seed=seed)
        rows.append(
            {
                "seed": seed,
                "file": name,
                "accuracy": accuracy,
                "accuracy_ci95": [low, high],
                "vs_fp32": difference,
                "vs_fp32_ci95": [diff_low, diff_high],
                "size_mb": Path(path).stat().st_size / 2**20,
                "latency_ms_b1": latency(b1[name]).median,
                "latency_ms_b32": latency(b32[name]).median,
                "speedup_b32": ratio(b32["fp32"], b32[name]).median,
            }
        )
    return {"seed": seed, "rows": rows, "shipped": shipped, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument(
        "--overlay", type=Path, help="a params overlay over params.yaml (the run that prepared the data)"
    )
    args = parser.parse_args()

    from cvops.config import Project, load_params
    from cvops.data.prepare import load_dataset_ref

    project = Project.find(REPO)
    ref = load_dataset_ref(project.prepared_dir)
    base = load_params(project.params_file, overlay=args.overlay)
    scratch = Path(tempfile.mkdtemp(prefix="cvops-compression-"))
    seeds = [one_seed(seed, args.ratios, ref, base, scratch) for seed in args.seeds]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; latency on {base.measure.threads} thread(s)",
        "dataset": base.data.source,
        "image_size": ref.image_size,
        "test_images": sum(ref.counts["test"].values()),
        "model": f"{base.train.model} from {base.train.pretrained}, {base.train.epochs} epochs",
        "prune": base.prune.model_dump(),
        "student": f"{base.distill.student}, {base.distill.epochs} epochs",
        "seeds": seeds,
    }
    out = REPO / "bench" / "results" / "compression.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    names = [row["file"] for row in seeds[0]["rows"]]
    print(
        "| file | accuracy (mean of seeds) | vs fp32, paired (worst low end) | size MB | b1 ms | b32 ms | x fp32 b32 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        rows = [row for seed in seeds for row in seed["rows"] if row["file"] == name]
        mean = statistics.mean
        print(
            f"| {name} | {mean(r['accuracy'] for r in rows):.4f} | {mean(r['vs_fp32'] for r in rows):+.4f} "
            f"({min(r['vs_fp32_ci95'][0] for r in rows):+.4f}) | {mean(r['size_mb'] for r in rows):.2f} "
            f"| {mean(r['latency_ms_b1'] for r in rows):.2f} | {mean(r['latency_ms_b32'] for r in rows):.1f} "
            f"| x{mean(r['speedup_b32'] for r in rows):.2f} |"
        )
    for seed in seeds:
        print(
            f"seed {seed['seed']}: ships {seed['shipped']}; seconds "
            f"{ ({k: round(v) for k, v in seed['seconds'].items()}) }"
        )
    print(
        f"\nmachine: {result['machine']}; {result['test_images']} test images at {ref.image_size} px; "
        f"{out.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
