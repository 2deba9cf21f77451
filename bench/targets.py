"""Benchmark: onnxruntime vs OpenVINO vs LiteRT on the demo model, fp32 and int8, on the same inputs.

A registered version's fp32 and int8 ONNX files (`make demo`: EfficientNet-Lite0 on ELPV at 128 px), each run by
onnxruntime and by OpenVINO (which reads the ONNX file; cvops's `openvino` target is the IR of the same graph),
and the fp32 file converted to LiteRT by onnx2tf (`make litert`), in fp32 and in int8 calibrated on the int8
file's calibration images (what the `litert` target makes when int8 ships): test accuracy, top-1 agreement with
the fp32 file on onnxruntime, and batch-1 and batch-32 latency on measure.threads threads (a LiteRT file takes
one image a call: batch 32 is 32 calls), the six sessions timed in one interleaved measurement (cvops/timing.py:
calls in turns, the speed-ups the medians of paired calls).

Usage: python bench/targets.py [--version V] [--runs 60]
Writes bench/results/targets.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from checkout import REPO, registered_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="a registered version (default: the champion, else the newest)")
    parser.add_argument("--runs", type=int, default=60, help="timed calls per session at batch 1 (half at 32)")
    args = parser.parse_args()

    import mlflow
    import numpy as np

    from cvops.data.prepare import load_dataset_ref, load_split
    from cvops.data.preprocess import model_inputs
    from cvops.env import ONNX2TF_ENV, environment
    from cvops.export.onnx_model import predict_logits, read_preprocessing, session, timed
    from cvops.export.quantization import calibration_images
    from cvops.export.targets import runtime_name, to_litert
    from cvops.registry.evidence import load_evidence
    from cvops.timing import latency, ratio

    project, params, _, info = registered_version(args.version)
    if "onnx_int8" not in info.tags:
        raise SystemExit(f"version {info.version} has no int8 file: run `make demo` (quantize.enabled: true)")
    files = {fmt: Path(mlflow.artifacts.download_artifacts(info.tags[f"onnx_{fmt}"])) for fmt in ("fp32", "int8")}
    pre = read_preprocessing(files["fp32"])
    ref = load_dataset_ref(project.prepared_dir)
    images, labels, _ = load_split(ref, "test")
    inputs = model_inputs(images, pre.mean, pre.std)
    threads = params.measure.threads
    sessions = {}
    for fmt, path in files.items():
        sessions[f"onnxruntime {fmt}"] = session(path, threads)
        sessions[f"openvino {fmt}"] = session(path, threads, "openvino")
    scratch = Path(tempfile.mkdtemp(prefix="cvops-targets-"))
    with environment({ONNX2TF_ENV: os.environ.get(ONNX2TF_ENV) or str(REPO / ".venv-litert" / "bin" / "onnx2tf")}):
        sessions["litert fp32"] = session(to_litert(files["fp32"], scratch / "model.tflite"), threads)
        report = load_evidence(info.run_id)[2]
        calibration = model_inputs(calibration_images(ref, report.calibration_ids), pre.mean, pre.std)
        int8 = to_litert(files["fp32"], scratch / "model.int8.tflite", calibration)
        sessions["litert int8"] = session(int8, threads)
    logits = {name: predict_logits(opened, inputs) for name, opened in sessions.items()}
    reference = logits["onnxruntime fp32"].argmax(1)
    single, batched = timed(sessions, inputs, params.measure.model_copy(update={"runs": args.runs}), ["logits"])
    rows = []
    for name, opened in sessions.items():
        rows.append(
            {
                "session": name,
                "runtime": runtime_name(opened),
                "accuracy": float(np.mean(logits[name].argmax(1) == labels)),
                "agreement_with_ort_fp32": float(np.mean(logits[name].argmax(1) == reference)),
                "latency_ms_b1": latency(single[name]).median,
                "latency_ms_b32": latency(batched[name]).median,
                "speedup_b32_vs_ort_fp32": ratio(batched["onnxruntime fp32"], batched[name]).median,
                "speedup_b32_vs_ort_same_file": ratio(batched[f"onnxruntime {name.split()[1]}"], batched[name]).median,
            }
        )
    import onnxruntime

    from cvops.export.runtimes import openvino

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; {threads} thread(s) per session",
        "versions": {"onnxruntime": onnxruntime.__version__, "openvino": openvino().get_version()},
        "model": f"version {info.version}: {params.train.model}, {pre.image_size} px",
        "test_images": len(labels),
        "rows": rows,
    }
    out = REPO / "bench" / "results" / "targets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| session | runtime | accuracy | agrees with ORT fp32 | b1 ms | b32 ms | x ORT fp32 | x ORT same file |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['session']} | {r['runtime']} | {r['accuracy']:.4f} | {r['agreement_with_ort_fp32']:.4f} "
            f"| {r['latency_ms_b1']:.2f} | {r['latency_ms_b32']:.1f} | x{r['speedup_b32_vs_ort_fp32']:.2f} "
            f"| x{r['speedup_b32_vs_ort_same_file']:.2f} |"
        )
    print(f"\nmachine: {result['machine']}; {result['model']}; {len(labels)} test images; {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
