"""Benchmark: which torchvision detector cvops builds on — FCOS, RetinaNet and Faster R-CNN on the same backbone
(timm EfficientNet-Lite0 from its packaged ImageNet weights, a feature pyramid of detect.fpn_channels), trained
by the same loop (cvops.training.trainer.train_model: AdamW, warm-up + cosine, the same seed, data and epochs) on the
same digit-scenes, in one run.

Per detector: parameters, training images/s, test COCO mAP@[.5:.95] and mAP@.5 (every box scoring 0.05,
torchvision's own post-processing), batch-1 latency on one thread with post-processing, and what exports to
ONNX: the raw outputs as plain tensors with a dynamic batch (what cvops ships, post-processing in numpy), or
only the whole model.

Usage: python bench/detectors.py [--scenes 300] [--epochs 6]
Writes bench/results/detectors.json and prints a markdown table.
"""

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402


class TorchvisionDetector(nn.Module):
    """A torchvision RetinaNet or Faster R-CNN behind the interface cvops's loop trains (`forward(x, targets)`
    returns the losses) and evaluates (`detect`): inputs already normalised and sized, so its transform only
    batches them. Faster R-CNN's class 0 is the background: labels shift by one on the way in and out."""

    def __init__(self, net: nn.Module, body: nn.Module, fpn: nn.Module, background: bool) -> None:
        super().__init__()
        self.net, self.body, self.fpn, self.shift = net, body, fpn, int(background)

    def forward(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Any:
        if targets is None:
            return self.net(list(x))
        shifted = [{"boxes": t["boxes"], "labels": t["labels"] + self.shift} for t in targets]
        if self.training:
            return self.net(list(x), shifted)
        # the validation loss: torchvision computes losses only in training mode, so its loss branches are
        # switched on while the backbone's BatchNorm stays in evaluation
        branches = [m for m in (self.net, getattr(self.net, "rpn", None), getattr(self.net, "roi_heads", None)) if m]
        for module in branches:
            module.training = True
        try:
            return self.net(list(x), shifted)
        finally:
            for module in branches:
                module.training = False

    def detect(self, x: Tensor) -> list[dict[str, Tensor]]:
        found = self.net.eval()(list(x))
        return [{**d, "labels": d["labels"] - self.shift} for d in found]

    @property
    def timm_body(self) -> nn.Module:
        return self.body

    def get_classifier(self) -> nn.Module:
        return nn.ModuleList([m for name, m in self.net.named_children() if name not in ("backbone", "transform")])


def build(kind: str, num_classes: int, size: int, params: Any) -> nn.Module:
    """The detector `kind` on the configured backbone, from its packaged weights."""
    from torchvision.models.detection import FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNetHead
    from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    from cvops.tasks.detection.model import create_detector

    detect, train = params.detect, params.train
    fcos = create_detector(train.model, num_classes, size, train.pretrained, detect.fpn_channels, detect.head_convs)
    if kind == "fcos":
        return fcos
    body, channels, width = fcos.timm_body, fcos.timm_body.feature_info.channels(), detect.fpn_channels
    batching = {"min_size": size, "max_size": size, "image_mean": [0.0] * 3, "image_std": [1.0] * 3}
    if kind == "retinanet":  # P3-P7 as FCOS, three scales and three shapes of anchor per cell
        fpn = FeaturePyramidNetwork(channels, width, extra_blocks=LastLevelP6P7(width, width))
        scales = tuple((s, round(s * 2 ** (1 / 3)), round(s * 2 ** (2 / 3))) for s in (16, 32, 64, 128, 256))
        anchors = AnchorGenerator(scales, ((0.5, 1.0, 2.0),) * 5)
        head = RetinaNetHead(width, anchors.num_anchors_per_location()[0], num_classes)
        net = RetinaNet(
            _Pyramid(body, fpn, width),
            num_classes,
            anchor_generator=anchors,
            head=head,
            score_thresh=0.05,
            detections_per_img=100,
            **batching,
        )
        return TorchvisionDetector(net, body, fpn, background=False)
    fpn = FeaturePyramidNetwork(channels, width, extra_blocks=LastLevelMaxPool())  # P3-P5 and a pooled P6
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
    pooler = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    net = FasterRCNN(
        _Pyramid(body, fpn, width),
        num_classes + 1,
        rpn_anchor_generator=anchors,
        box_roi_pool=pooler,
        box_score_thresh=0.05,
        box_detections_per_img=100,
        **batching,
    )
    return TorchvisionDetector(net, body, fpn, background=True)


class _Pyramid(nn.Module):
    def __init__(self, body: nn.Module, fpn: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body, self.fpn, self.out_channels = body, fpn, out_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


class _Raw(nn.Module):
    """A one-stage detector's raw outputs, plain tensors per anchor (what cvops exports for FCOS)."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.kind == "fcos":
            return self.model.exported(x)[:3]  # type: ignore[operator]
        net = self.model.net  # type: ignore[union-attr]
        out = net.head(list(net.backbone(x).values()))
        return out["cls_logits"], out["bbox_regression"]


def onnx_export(kind: str, model: nn.Module, size: int, folder: Path) -> str:
    """What exports: the raw outputs with a dynamic batch (checked against torch at batch 1 and 3), or, for a
    two-stage detector, the whole model (post-processing inside) one image a call, if that."""
    import onnxruntime as ort

    path = folder / f"{kind}.onnx"
    probe = torch.rand(3, 3, size, size)
    try:
        if kind == "faster-rcnn":  # proposals are chosen by data-dependent NMS between the two stages
            torch.onnx.export(model.net.eval(), ([probe[0]],), str(path), opset_version=17, dynamo=False)  # type: ignore[union-attr]
            session = ort.InferenceSession(str(path))
            session.run(None, {session.get_inputs()[0].name: probe[0].numpy()})
            return "whole model only, one image a call"
        raw = _Raw(model, kind).eval()
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            torch.onnx.export(
                raw,
                (probe[:2],),
                str(path),
                dynamo=True,
                input_names=["x"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
        session = ort.InferenceSession(str(path))
        with torch.no_grad():
            pairs = [(raw(probe[:n]), session.run(None, {"x": probe[:n].numpy()})) for n in (1, 3)]
        same = all(
            np.allclose(a.numpy(), b, atol=1e-3) for ours, theirs in pairs for a, b in zip(ours, theirs, strict=True)
        )
        return "raw outputs, dynamic batch" + ("" if same else " (outputs differ from torch)")
    except Exception as err:  # the exporter's and onnxruntime's own error types
        return f"fails ({type(err).__name__})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()

    from detection import prepared  # bench/detection.py: the same scenes, prepared as the demo's

    from cvops.config import load_params
    from cvops.data.augment import augmentation
    from cvops.data.preprocess import model_inputs
    from cvops.tasks.detection.data import load_split as load_detection_split
    from cvops.tasks.detection.evaluation import fits, found_in_originals, originals
    from cvops.tasks.detection.model import mean_average_precision
    from cvops.tasks.detection.train import BoxDataset, detection_objective
    from cvops.timing import interleaved_calls, latency, torch_threads
    from cvops.training.models import normalization
    from cvops.training.trainer import TrainingInputs, seed_everything, train_model, training_splits

    warnings.filterwarnings("ignore", category=UserWarning)  # the exporter's notes on traced control flow
    overrides = [
        f"data.scenes={args.scenes}",
        f"train.epochs={args.epochs}",
        "prepare.image_size=128",
        f"train.early_stopping_patience={args.epochs}",
    ]
    params = load_params(REPO / "params.yaml", overrides, overlay=REPO / "overlays" / "digit-scenes.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-detectors-"))
    ref = prepared(scratch, params)
    splits = training_splits(ref)
    images, resized, rows = load_detection_split(ref, "test")
    placed = fits(rows, ref.image_size, ref.resize)
    truths = originals(resized, placed)
    cpu = torch.device("cpu")
    results = []
    for kind in ("fcos", "retinanet", "faster-rcnn"):
        seed_everything(params.base.seed)
        model = build(kind, ref.num_classes, ref.image_size, params)
        mean, std = normalization(model)
        augment = augmentation(params.train.augment, params.base.seed, boxes=True)
        train_set = BoxDataset(*splits["train"], mean, std, augment)
        val_set = BoxDataset(*splits["val"], mean, std)
        start = time.perf_counter()
        trained = train_model(
            TrainingInputs(model, train_set, val_set, detection_objective),
            params.train,
            seed=params.base.seed,
            device=cpu,
        )
        train_s = time.perf_counter() - start
        model = trained.model.eval()
        inputs = torch.from_numpy(model_inputs(images, mean, std))
        with torch.no_grad():
            found = [
                {k: v.numpy() for k, v in d.items()}
                for i in range(0, len(inputs), 16)
                for d in model.detect(inputs[i : i + 16])
            ]
        scores = mean_average_precision(found_in_originals(found, placed), truths, ref.class_names)
        with torch_threads(params.measure.threads), torch.no_grad():
            one = inputs[:1]
            b1 = latency(interleaved_calls({"b1": lambda m=model, x=one: m.detect(x)}, params.measure.runs)["b1"])
        export = onnx_export(kind, model, ref.image_size, scratch)
        results.append(
            {
                "detector": kind,
                "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
                "train_seconds": train_s,
                "train_images_per_second": trained.images_per_second,
                "map": scores["map"],
                "map_50": scores["map_50"],
                "latency_ms_b1": b1.median,
                "onnx": export,
            }
        )
        print(f"{kind}: mAP {scores['map']:.3f}, mAP@.5 {scores['map_50']:.3f}, {train_s:.0f} s", flush=True)

    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; latency on {params.measure.threads} thread(s)",
        "scenes": args.scenes,
        "image_size": ref.image_size,
        "test_images": len(images),
        "epochs": args.epochs,
        "backbone": params.train.model,
        "fpn_channels": params.detect.fpn_channels,
        "detectors": results,
    }
    path = REPO / "bench" / "results" / "detectors.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(
        f"\n{args.scenes} scenes at {ref.image_size} px, {args.epochs} epochs, {len(images)} test scenes; "
        f"{platform.machine()} {os.cpu_count()} cores\n"
    )
    print("| detector | parameters (M) | train images/s | mAP@[.5:.95] | mAP@.5 | batch 1 ms | ONNX |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['detector']} | {r['parameters_m']:.2f} | {r['train_images_per_second']:.1f} | {r['map']:.3f} "
            f"| {r['map_50']:.3f} | {r['latency_ms_b1']:.1f} | {r['onnx']} |"
        )
    print(f"\nJSON: {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
