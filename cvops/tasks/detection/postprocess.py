"""A detector's post-processing in numpy: the exported FCOS outputs to boxes, scores and labels, as torchvision's
`FCOS.postprocess_detections` makes them (the quantization step checks the two agree on every test image).

Per pyramid level: score = sqrt(sigmoid(class logit) * sigmoid(centerness)) for every point and class, those
above the score threshold, at most `topk` of them by score; boxes decoded from the offsets (relative to each
point's anchor size) and clipped to the input; then, over all levels, non-maximum suppression per class and the
best `max_detections`. Torch-free: serving and batch inference run it on onnxruntime's outputs.
"""

import itertools
from dataclasses import dataclass

import numpy as np

TOPK_CANDIDATES = 1000  # per pyramid level, before NMS (torchvision's default)


@dataclass(frozen=True)
class PostProcess:
    """What turns a detector's outputs into detections."""

    score_threshold: float = 0.05  # the default scores boxes for mAP: COCO evaluation ranks them all, weak ones too
    nms_iou: float = 0.6
    max_detections: int = 100


FOR_MAP = PostProcess()  # every box that could count in COCO's mAP


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def decode(offsets: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """FCOS box offsets (left, top, right, bottom, in units of the anchor's size) to x1, y1, x2, y2."""
    centre_x, centre_y = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    width, height = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    return np.stack(
        [
            centre_x - offsets[:, 0] * width,
            centre_y - offsets[:, 1] * height,
            centre_x + offsets[:, 2] * width,
            centre_y + offsets[:, 3] * height,
        ],
        axis=1,
    )


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first (a box overlapping a kept one by more
    than `iou` goes)."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        overlap = w * h / np.maximum(areas[best] + areas[rest] - w * h, np.finfo(np.float32).tiny)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    logits: np.ndarray,
    offsets: np.ndarray,
    centerness: np.ndarray,
    anchors: np.ndarray,
    level_sizes: list[int],
    image_size: int,
    post: PostProcess,
) -> list[dict[str, np.ndarray]]:
    """Detections per image of a batch: boxes (K, 4) float32 in input pixels, scores (K,), labels (K,) int64."""
    bounds = np.cumsum([0, *level_sizes])
    found = []
    for image in range(len(logits)):
        boxes, scores, labels = [], [], []
        for start, end in itertools.pairwise(bounds):
            level = np.sqrt(_sigmoid(logits[image, start:end]) * _sigmoid(centerness[image, start:end])).ravel()
            candidates = np.flatnonzero(level > post.score_threshold)
            top = candidates[np.argsort(-level[candidates], kind="stable")[:TOPK_CANDIDATES]]
            points, classes = np.divmod(top, logits.shape[2])
            decoded = decode(offsets[image, start + points], anchors[start + points])
            boxes.append(np.clip(decoded, 0, image_size))
            scores.append(level[top])
            labels.append(classes)
        all_boxes, all_scores, all_labels = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
        # per-class NMS in one pass: each class's boxes shifted apart so that no two classes overlap
        shifted = all_boxes + (all_labels * (image_size + 1.0))[:, None]
        keep = nms(shifted, all_scores, post.nms_iou)[: post.max_detections]
        found.append(
            {
                "boxes": all_boxes[keep].astype(np.float32),
                "scores": all_scores[keep].astype(np.float32),
                "labels": all_labels[keep].astype(np.int64),
            }
        )
    return found
