"""Benchmark: torch fp32 vs ONNX fp32 vs ONNX int8 (static, QDQ, per channel) on this CPU.

For the default model (params.yaml: train.*) and, trained from scratch for --epochs on the same data,
resnet18 and a mobile model: test accuracy, top-1 agreement with torch, file size, median latency at
batch 1 and 32 (after warm-up), and which artifact cvops's rule would ship. All models share one
process and one set of test images, so the ratios compare like with like.

Usage: python bench/quantization.py [--epochs 3] [--models resnet18,mobilenetv3_large_100]
Needs the prepared data of the checkout (`make demo`, or `cvops data import elpv` + `dvc repro`).
Writes bench/results/quantization.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads


def torch_row(model, ref, measure) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import numpy as np
    import torch

    from cvops.data.prepare import load_split
    from cvops.data.preprocess import model_inputs
    from cvops.timing import interleaved_calls, latency, torch_threads
    from cvops.training.models import normalization

    images, labels, _ = load_split(ref, "test")
    inputs = torch.from_numpy(model_inputs(images, *normalization(model)))
    model = model.cpu().eval()
    with torch.no_grad():
        predicted = torch.cat([model(inputs[i : i + 64]) for i in range(0, len(inputs), 64)]).argmax(1).numpy()
        b1, b32 = inputs[:1], inputs[:32]
        with torch_threads(measure.threads):
            latency_b1 = latency(interleaved_calls({"b1": lambda: model(b1)}, measure.runs)["b1"]).median
            latency_b32 = latency(interleaved_calls({"b32": lambda: model(b32)}, measure.batch_runs)["b32"]).median
    size = sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 2**20
    return {
        "format": "torch-fp32",
        "accuracy": float(np.mean(predicted == labels)),
        "agreement": 1.0,
        "size_mb": size,
        "latency_ms_b1": latency_b1,
        "latency_ms_b32": latency_b32,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs for the non-default models")
    parser.add_argument("--models", default="resnet18,mobilenetv3_large_100", help="comma-separated timm names")
    args = parser.parse_args()

    from cvops.config import Project
    from cvops.data.prepare import load_dataset_ref
    from cvops.export.quantization import quantize
    from cvops.training.trainer import fit

    project = Project.find(REPO)
    ref = load_dataset_ref(project.prepared_dir)
    params = project.params()
    candidates = [(params.train.model, params)]
    for name in filter(None, args.models.split(",")):
        train = params.train.model_copy(
            update={"model": name, "pretrained": "none", "epochs": args.epochs, "lr": 2e-3, "head_lr_multiplier": 1.0}
        )
        candidates.append((name, params.model_copy(update={"train": train})))

    rows = []
    for name, model_params in candidates:
        start = time.perf_counter()
        trained = fit(ref, model_params)
        train_s = time.perf_counter() - start
        baseline = torch_row(trained.model, ref, params.measure)
        report = quantize(
            trained.model,
            ref,
            Path(tempfile.mkdtemp(prefix="cvops-q-")),
            params,
        )
        onnx_rows = [m.model_dump(exclude={"path", "sha256"}) for m in (report.fp32, report.int8) if m]
        speedup = report.speedup_b32()
        rows.append(
            {
                "model": name,
                "pretrained": model_params.train.pretrained,
                "epochs": model_params.train.epochs,
                "train_s": train_s,
                "artifacts": [baseline, *onnx_rows],
                "int8_speedup_b32": speedup,
                "int8_accuracy_drop": report.fp32.accuracy - report.int8.accuracy if report.int8 else None,
                "shipped": report.shipped,
                "reason": report.reason,
            }
        )

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; measured on {params.measure.threads} thread(s)",
        "image_size": ref.image_size,
        "test_images": sum(ref.counts["test"].values()),
        "calibration": f"{params.quantize.calibration_size} train images, {params.quantize.calibration_method}",
        "models": rows,
    }
    out = REPO / "bench" / "results" / "quantization.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("| model | artifact | accuracy | agreement | size MB | b1 ms | b32 ms | int8 speed-up b32 | ships |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for artifact in row["artifacts"]:
            is_int8 = artifact["format"] == "onnx-int8"
            speedup = f"x{row['int8_speedup_b32']:.2f}" if is_int8 and row["int8_speedup_b32"] else ""
            ships = "yes" if artifact["format"] == row["shipped"] else ""
            print(
                f"| {row['model']} | {artifact['format']} | {artifact['accuracy']:.4f} | {artifact['agreement']:.4f} "
                f"| {artifact['size_mb']:.2f} | {artifact['latency_ms_b1']:.2f} | {artifact['latency_ms_b32']:.1f} "
                f"| {speedup} | {ships} |"
            )
    print(
        f"\nmachine: {result['machine']}; {result['test_images']} test images at {result['image_size']} px; "
        f"calibration: {result['calibration']}; JSON: {out.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
