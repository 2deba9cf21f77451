"""The detection model: torchvision's FCOS on a timm backbone (EfficientNet-Lite0 with its packaged ImageNet
weights) and a feature pyramid, for square images of one size.

FCOS is anchor-free (one point per feature-map cell), so it has no anchor shapes to tune per dataset, and its
head's raw outputs (class logits, box offsets, centerness) are plain tensors: `Detector.forward` returns them,
which is what ONNX exports, and post-processing (score threshold, top-k, class-wise NMS) runs on them after.
torchvision's own post-processing (`Detector.detect`) is the reference the shared predictor's is checked on.
"""

import logging
from collections import OrderedDict
from typing import Any

import numpy as np
import timm
import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOS, FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from cvops.errors import ModelError
from cvops.tasks.detection.postprocess import FOR_MAP, TOPK_CANDIDATES, PostProcess
from cvops.training.models import NO_PRETRAINED, create_model

FEATURE_LEVELS = (2, 3, 4)  # the backbone stages the pyramid starts from: strides 8, 16 and 32 (P6, P7 added)


class _Backbone(nn.Module):
    """timm feature stages -> FPN: the OrderedDict of pyramid levels FCOS expects, with `out_channels`."""

    def __init__(self, body: nn.Module, channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=LastLevelP6P7(out_channels, out_channels))
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


class Detector(nn.Module):
    """FCOS for `image_size` x `image_size` inputs normalised like the backbone's pretraining (`model_inputs`).

    Its anchors (one point per cell of every level) are fixed by the image size, so they are computed once:
    a buffer the exported model carries as its fourth output, with `level_sizes` splitting them by level."""

    anchors: Tensor

    def __init__(self, fcos: FCOS, image_size: int) -> None:
        super().__init__()
        self.fcos, self.image_size = fcos, image_size
        probe = torch.zeros(1, 3, image_size, image_size)
        with torch.no_grad():
            was_training = fcos.training
            features = list(fcos.eval().backbone(probe).values())
            fcos.train(was_training)
        anchors = fcos.anchor_generator(ImageList(probe, [(image_size, image_size)]), features)[0]
        self.register_buffer("anchors", anchors)
        self.level_sizes = [f.shape[2] * f.shape[3] for f in features]

    def forward(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Any:
        """Raw outputs for a batch (N, 3, S, S): class logits (N, A, C), box offsets (N, A, 4) relative to each
        anchor's size, centerness logits (N, A, 1), and the anchors (A, 4) in input pixels (what ONNX exports).

        With `targets` (boxes in input pixels, labels), FCOS's losses instead: focal classification, GIoU
        boxes, centerness (through forward, so DistributedDataParallel sees the pass it must synchronise)."""
        out, _ = self._heads(x)
        if targets is not None:
            return self.fcos.compute_loss(targets, out, [self.anchors] * len(x), self.level_sizes)
        return out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"], self.anchors

    def _heads(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The FCOS head's outputs, and the backbone's deepest stage averaged over space: (N, channels)."""
        stages = self.fcos.backbone.body(x)
        pyramid = self.fcos.backbone.fpn(OrderedDict((str(i), f) for i, f in enumerate(stages)))
        return self.fcos.head(list(pyramid.values())), stages[-1].mean(dim=(2, 3))

    def exported(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """What the ONNX file computes: the raw outputs of `forward` and the embedding (monitoring's)."""
        out, embedding = self._heads(x)
        return out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"], self.anchors, embedding

    def detect(self, x: Tensor, post: PostProcess = FOR_MAP) -> list[dict[str, Tensor]]:
        """torchvision's post-processing: per image boxes (K, 4) in input pixels, scores (K,), labels (K,)."""
        out, _ = self._heads(x)
        split = {name: list(t.split(self.level_sizes, dim=1)) for name, t in out.items()}
        fcos = self.fcos
        fcos.score_thresh, fcos.nms_thresh, fcos.detections_per_img = (
            post.score_threshold,
            post.nms_iou,
            post.max_detections,
        )
        size = (self.image_size, self.image_size)
        return fcos.postprocess_detections(
            split, [list(self.anchors.split(self.level_sizes))] * len(x), [size] * len(x)
        )

    @property
    def timm_body(self) -> nn.Module:
        """The timm backbone: its config names the normalisation the detector takes (`models.normalization`)."""
        return self.fcos.backbone.body

    def get_classifier(self) -> nn.Module:
        """The parts trained from scratch (timm's name for a model's head): the pyramid and the FCOS head."""
        return nn.ModuleList([self.fcos.backbone.fpn, self.fcos.head])


def create_detector(
    name: str,
    num_classes: int,
    image_size: int,
    pretrained: str = NO_PRETRAINED,
    fpn_channels: int = 64,
    head_convs: int = 2,
) -> Detector:
    """FCOS on the timm model `name`'s feature stages (with `pretrained` weights, as classification loads them)."""
    whole = create_model(name, 0, pretrained)  # checks the name, loads and checks the weights
    try:
        body = timm.create_model(name, pretrained=False, features_only=True, out_indices=FEATURE_LEVELS)
    except (RuntimeError, ValueError, IndexError) as err:
        raise ModelError(f"timm model {name} has no feature stages {FEATURE_LEVELS} for a detector: {err}") from err
    _, unexpected = body.load_state_dict(whole.state_dict(), strict=False)
    if len(unexpected) == len(whole.state_dict()):
        raise ModelError(f"the weights of {name} do not fit its feature stages")
    backbone = _Backbone(body, body.feature_info.channels(), fpn_channels)  # type: ignore[union-attr, operator]
    sizes = tuple((8 * 2**i,) for i in range(len(FEATURE_LEVELS) + 2))  # one anchor per cell, its level's stride
    anchor_generator = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    head = FCOSHead(fpn_channels, 1, num_classes, num_convs=head_convs)
    fcos = FCOS(
        backbone,
        num_classes,
        min_size=image_size,
        max_size=image_size,
        anchor_generator=anchor_generator,
        head=head,
        topk_candidates=TOPK_CANDIDATES,
    )
    return Detector(fcos, image_size)


@torch.no_grad()
def predict_boxes(
    model: Detector, inputs: np.ndarray, device: torch.device, post: PostProcess = FOR_MAP, batch_size: int = 32
) -> list[dict[str, np.ndarray]]:
    """torch detections for normalised inputs (N, 3, S, S): per image boxes (K, 4) in input pixels, scores, labels."""
    model.eval().to(device)
    found = []
    for start in range(0, len(inputs), batch_size):
        batch = torch.from_numpy(inputs[start : start + batch_size]).to(device)
        found += [{k: v.cpu().numpy() for k, v in d.items()} for d in model.detect(batch, post)]
    return found


def mean_average_precision(
    predictions: list[dict[str, np.ndarray]], truths: list[tuple[np.ndarray, np.ndarray]], class_names: list[str]
) -> dict[str, float]:
    """COCO mAP@[.5:.95], mAP@.5, mAP@.75, mAP by object size (small < 32², medium < 96², large), recall@100,
    and per class AP and recall, of `predictions` (boxes, scores, labels) against `truths` (boxes, labels):
    torchmetrics on the faster-coco-eval backend. A class with no true box has AP -1 (COCO's "none")."""
    from torchmetrics.detection import MeanAveragePrecision

    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # it prints its whole table at INFO
    metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True, backend="faster_coco_eval")
    metric.update(
        [
            {
                "boxes": torch.as_tensor(p["boxes"], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.as_tensor(p["scores"], dtype=torch.float32),
                "labels": torch.as_tensor(p["labels"], dtype=torch.int64),
            }
            for p in predictions
        ],
        [
            {
                "boxes": torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.as_tensor(labels, dtype=torch.int64),
            }
            for b, labels in truths
        ],
    )
    result = metric.compute()
    metrics = {
        name: float(result[key])
        for name, key in (
            ("map", "map"),
            ("map_50", "map_50"),
            ("map_75", "map_75"),
            ("map_small", "map_small"),
            ("map_medium", "map_medium"),
            ("map_large", "map_large"),
            ("recall", "mar_100"),
        )
    }
    classes = result["classes"].reshape(-1).tolist()
    per_class_ap = result["map_per_class"].reshape(-1).tolist()
    per_class_recall = result["mar_100_per_class"].reshape(-1).tolist()
    for index, ap, recall in zip(classes, per_class_ap, per_class_recall, strict=True):
        metrics[f"ap_{class_names[int(index)]}"] = float(ap)
        metrics[f"recall_{class_names[int(index)]}"] = float(recall)
    return metrics
