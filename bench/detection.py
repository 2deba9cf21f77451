"""Benchmark: the detector on digit-scenes — training and inference speed (torch, ONNX fp32, ONNX int8) and the
COCO mAP of each artifact, in one run on one set of test scenes.

The data and the run are the detection demo's (overlays/digit-scenes.yaml): scenes composed from real MNIST
digits, FCOS on EfficientNet-Lite0. Images/s at batch 32 are from the median of interleaved calls on
`measure.threads` thread(s) (cvops/timing.py), with the served post-processing (detect.*: score threshold,
NMS) included: numpy for the ONNX files, torchvision's for the torch model. mAP ranks every box scoring 0.05.
Also draws the shipped artifact's boxes on a test scene (--picture).

Usage: python bench/detection.py [--scenes 600] [--epochs 10] [--picture docs/detection-boxes.png]
Writes bench/results/detection.json and prints a markdown table.
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


def prepared(root: Path, params):  # type: ignore[no-untyped-def]
    from cvops.data.prepare import prepare_dataset
    from cvops.data.validation import validate_dataset
    from cvops.tasks.detection.boxes import import_scenes
    from cvops.tasks.detection.scenes import digit_scenes_source

    import_scenes(digit_scenes_source(params.data.scenes, params.base.seed), root / "raw")
    report = validate_dataset(root / "raw", root / "validated", params.validation)
    assert report.passed, report.summary()
    return prepare_dataset(root / "validated", root / "raw", root / "prepared", params.prepare, params.base.seed)


def throughput(call, measure) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(batch-1 latency in ms, images/s at batch 32) from interleaved timed calls of call(batch_size)."""
    from cvops.timing import interleaved_calls, latency

    b1 = latency(interleaved_calls({"b1": lambda: call(1)}, measure.runs)["b1"]).median
    b32 = latency(interleaved_calls({"b32": lambda: call(32)}, measure.batch_runs)["b32"]).median
    return b1, 32_000 / b32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--picture", type=Path, help="write the shipped artifact's boxes on a test scene here (PNG)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from cvops.config import load_params
    from cvops.data.preprocess import model_inputs
    from cvops.export.onnx_model import read_preprocessing, session
    from cvops.export.quantization import quantize
    from cvops.tasks.detection.data import load_split as load_detection_split
    from cvops.tasks.detection.evaluation import fits, found_in_originals, originals
    from cvops.tasks.detection.export import onnx_detections
    from cvops.tasks.detection.model import mean_average_precision, predict_boxes
    from cvops.timing import torch_threads
    from cvops.training.models import normalization
    from cvops.training.trainer import fit

    overrides = [f"data.scenes={args.scenes}", f"train.epochs={args.epochs}"]
    params = load_params(REPO / "params.yaml", overrides, overlay=REPO / "overlays" / "digit-scenes.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-detection-"))
    ref = prepared(scratch, params)
    start = time.perf_counter()
    result = fit(ref, params)
    train_s = time.perf_counter() - start
    model, measure = result.model.eval(), params.measure
    report = quantize(model, ref, scratch / "onnx", params)

    images, resized, rows = load_detection_split(ref, "test")
    inputs = model_inputs(images, *normalization(model))
    placed = fits(rows, ref.image_size, ref.resize)
    truths = originals(resized, placed)

    def scored(found):  # type: ignore[no-untyped-def]
        return mean_average_precision(found_in_originals(found, placed), truths, ref.class_names)

    batch = np.resize(inputs, (32, *inputs.shape[1:]))
    served = params.detect.served
    with torch_threads(measure.threads):
        torch_b1, torch_ips = throughput(
            lambda n: predict_boxes(model, batch[:n], torch.device("cpu"), served), measure
        )
    torch_map = scored(predict_boxes(model, inputs, torch.device("cpu")))
    artifacts = [
        {
            "format": "torch-fp32",
            "map": torch_map["map"],
            "map_50": torch_map["map_50"],
            "agreement": 1.0,
            "size_mb": sum(p.numel() * 4 for p in model.parameters()) / 2**20,
            "latency_ms_b1": torch_b1,
            "images_per_second_b32": torch_ips,
        }
    ]
    for measured in (m for m in (report.fp32, report.int8) if m is not None):
        path = Path(measured.path)
        onnx, preprocessing = session(path, measure.threads), read_preprocessing(path)
        b1, ips = throughput(lambda n, s=onnx, p=preprocessing: onnx_detections(s, batch[:n], p, served), measure)
        found = scored(onnx_detections(onnx, inputs, preprocessing))
        artifacts.append(
            {
                "format": measured.format,
                "map": found["map"],
                "map_50": found["map_50"],
                "agreement": measured.agreement,
                "size_mb": measured.size_mb,
                "latency_ms_b1": b1,
                "images_per_second_b32": ips,
            }
        )

    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; inference on {measure.threads} thread(s)",
        "scenes": args.scenes,
        "image_size": ref.image_size,
        "test_images": len(images),
        "epochs": len(result.history),
        "train_seconds": train_s,
        "train_images_per_second": result.images_per_second,
        "artifacts": artifacts,
        "shipped": report.shipped,
        "reason": report.reason,
    }
    path = REPO / "bench" / "results" / "detection.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    if args.picture:
        draw_served(Path(report.shipped_artifact.path), params, args.picture)
    print(
        f"training: {out['epochs']} epochs in {train_s:.0f} s, {result.images_per_second:.1f} images/s "
        f"({args.scenes} scenes, {ref.image_size} px, {platform.machine()} {os.cpu_count()} cores)\n"
    )
    print(
        "| artifact | mAP@[.5:.95] | mAP@.5 | agreement with torch | size MB | batch 1 ms | images/s (batch 32) "
        "| ships |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for a in artifacts:
        ships = "yes" if a["format"] == report.shipped else ""
        print(
            f"| {a['format']} | {a['map']:.3f} | {a['map_50']:.3f} | {a['agreement']:.3f} | {a['size_mb']:.2f} "
            f"| {a['latency_ms_b1']:.1f} | {a['images_per_second_b32']:.1f} | {ships} |"
        )
    print(f"\n{report.reason}\nJSON: {path.relative_to(REPO)}")


def draw_served(onnx_path: Path, params, picture: Path, count: int = 4) -> None:  # type: ignore[no-untyped-def]
    """The served detector's answers on new scenes (not in the data), each sent at twice its size and drawn
    at the size sent: a row of `count` pictures."""
    from PIL import Image

    from cvops.serving.predictor import decode_image
    from cvops.tasks.detection.predictor import DetectionPredictor, render
    from cvops.tasks.detection.scenes import digit_scenes_source

    predictor = DetectionPredictor(onnx_path, "cvops-detector", "bench", "", max_batch=1, post=params.detect.served)
    pre, drawn = predictor.preprocessing, []
    for scene in digit_scenes_source(count, seed=params.base.seed + 1000).scenes:
        data = io.BytesIO()
        scene.image.resize((scene.image.width * 2, scene.image.height * 2), Image.Resampling.BICUBIC).save(data, "PNG")
        image = decode_image(data.getvalue(), pre.image_size, 10**7, pre.resize, pre.decoder)
        outputs = predictor.predict(image.pixels[None])
        found = predictor.detections(tuple(o[0] for o in outputs), image.width, image.height)
        drawn.append(Image.open(io.BytesIO(render(data.getvalue(), found))))
    sheet = Image.new(
        "RGB", (sum(d.width for d in drawn) + 8 * (count + 1), max(d.height for d in drawn) + 16), "white"
    )
    x = 8
    for tile in drawn:
        sheet.paste(tile, (x, 8))
        x += tile.width + 8
    picture.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(picture)


if __name__ == "__main__":
    main()
