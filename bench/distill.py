"""Benchmark: knowledge distillation on this CPU — the teacher (params.yaml: train.*), a smaller student trained on
the teacher's softened answers and the true labels (cvops.training.distillation), and the same student trained on the
true labels alone, on the same data, seed and epochs, in one run.

Per model: parameters, training time, test accuracy (torch), and its ONNX int8 artifact as cvops ships it
(static QDQ, calibrated on seeded train images): accuracy, size and median latency at batch 1 and 32, with
the student's agreement with the teacher on the test images.

Usage: python bench/distill.py [--student mobilenetv3_small_100] [--epochs 10] [--temperature 4] [--alpha 0.9]
(the defaults: params.yaml's distill section, as the pipeline's distillation stage trains the student)
Needs the prepared data of the checkout (`make demo`, or `cvops data import elpv` + `dvc repro`).
Writes bench/results/distill.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads


def row(
    name: str, trained: Any, seconds: float, ref: Any, params: Any, teacher_answers: Any
) -> tuple[dict[str, Any], Any]:
    """What a deployment of `trained` gets: its torch accuracy, and its int8 artifact measured as cvops ships it;
    with its answers on the test images."""
    import numpy as np
    import torch

    from cvops.data.augment import ImageDataset
    from cvops.data.prepare import load_split
    from cvops.evaluation.evaluator import predict_proba
    from cvops.export.quantization import quantize
    from cvops.training.models import normalization

    images, labels, _ = load_split(ref, "test")
    answers = predict_proba(
        trained.model, ImageDataset(images, labels, *normalization(trained.model)), torch.device("cpu")
    ).argmax(axis=1)
    report = quantize(trained.model, ref, Path(tempfile.mkdtemp(prefix="cvops-d-")), params)
    int8 = report.int8 or report.fp32
    return {
        "model": name,
        "architecture": params.train.model,
        "parameters": sum(p.numel() for p in trained.model.parameters()),
        "train_s": seconds,
        "epochs_run": len(trained.history),
        "accuracy": float(np.mean(answers == labels)),
        "teacher_agreement": float(np.mean(answers == teacher_answers)) if teacher_answers is not None else 1.0,
        "artifact": int8.format,
        "artifact_accuracy": int8.score,
        "size_mb": int8.size_mb,
        "latency_ms_b1": int8.latency_ms_b1,
        "latency_ms_b32": int8.latency_ms_b32,
    }, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", help="timm name of the student (default: params.yaml distill.student)")
    parser.add_argument("--epochs", type=int, help="the students' training epochs (default: distill.epochs)")
    parser.add_argument("--temperature", type=float, help="softening of both models' answers (distill.temperature)")
    parser.add_argument("--alpha", type=float, help="the teacher's share of the loss (distill.alpha)")
    args = parser.parse_args()

    from cvops.config import Project
    from cvops.data.prepare import load_dataset_ref
    from cvops.training.distillation import distill
    from cvops.training.trainer import fit

    project = Project.find(REPO)
    ref = load_dataset_ref(project.prepared_dir)
    params = project.params()
    chosen = {"student": args.student, "epochs": args.epochs, "temperature": args.temperature, "alpha": args.alpha}
    params = params.model_copy(
        update={
            "distill": params.distill.model_copy(
                update={key: value for key, value in chosen.items() if value is not None}
            )
        }
    )
    student, distilling = params.student(), params.distill

    start = time.perf_counter()
    teacher = fit(ref, params)
    teacher_row, teacher_answers = row("teacher", teacher, time.perf_counter() - start, ref, params, None)
    rows = [teacher_row]
    start = time.perf_counter()
    taught = distill(ref, params, teacher.model)
    rows.append(row("student, distilled", taught, time.perf_counter() - start, ref, student, teacher_answers)[0])
    start = time.perf_counter()
    alone = fit(ref, student)
    rows.append(row("student, labels only", alone, time.perf_counter() - start, ref, student, teacher_answers)[0])

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; measured on {params.measure.threads} thread(s)",
        "dataset": params.data.source,
        "image_size": ref.image_size,
        "test_images": sum(ref.counts["test"].values()),
        "teacher": f"{params.train.model} from {params.train.pretrained}, {params.train.epochs} epochs",
        "student": f"{distilling.student} from {distilling.pretrained}, {distilling.epochs} epochs, "
        f"T={distilling.temperature}, alpha={distilling.alpha}",
        "models": rows,
    }
    out = REPO / "bench" / "results" / "distill.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        "| model | architecture | parameters | train s | accuracy | agrees with teacher | int8 accuracy | int8 MB "
        "| int8 b1 ms | int8 b32 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['architecture']} | {r['parameters'] / 1e6:.2f} M | {r['train_s']:.0f} "
            f"| {r['accuracy']:.4f} | {r['teacher_agreement']:.4f} | {r['artifact_accuracy']:.4f} "
            f"| {r['size_mb']:.2f} | {r['latency_ms_b1']:.2f} | {r['latency_ms_b32']:.1f} |"
        )
    print(
        f"\nmachine: {result['machine']}; {result['dataset']}: {result['test_images']} test images at "
        f"{result['image_size']} px; teacher: {result['teacher']}; student: {result['student']}; JSON: "
        f"{out.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
