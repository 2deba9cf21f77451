"""Per-image detection matches, computed once, from which COCO-style mAP is recomputed on any resample of the
images in microseconds: what the bootstrap intervals and the paired champion comparison need (a resample
of COCO evaluation itself would take seconds each).

The matching follows COCO's: per image and class, detections in falling score order (at most 100 per
image) each take the unmatched true box they overlap most, if the IoU reaches the threshold; AP is the
101-point interpolated precision-recall area, averaged over IoU 0.50:0.05:0.95 and over the classes that have
true boxes. It leaves out COCO's crowd regions and area ranges, so its mAP on the whole set is within a hair
of COCO's (a test holds them together); the reported mAP is always COCO's own (torchmetrics).
"""

from dataclasses import dataclass

import numpy as np

from cvops.data.validation import pairwise_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class ImageMatches:
    """One image's detections (score, class, and whether each is a true positive at each IoU threshold) and
    its number of true boxes per class."""

    scores: np.ndarray  # (D,)
    labels: np.ndarray  # (D,)
    true_positive: np.ndarray  # (D, T) bool
    truths: np.ndarray  # (C,) true boxes per class


def match_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    true_boxes: np.ndarray,
    true_labels: np.ndarray,
    num_classes: int,
) -> ImageMatches:
    order = np.argsort(-scores, kind="stable")[:MAX_DETECTIONS]
    boxes, scores, labels = boxes[order].reshape(-1, 4), scores[order], labels[order]
    hits = np.zeros((len(scores), len(IOU_THRESHOLDS)), dtype=bool)
    for label in np.unique(labels):
        mine, theirs = np.flatnonzero(labels == label), np.flatnonzero(true_labels == label)
        if not len(theirs):
            continue
        overlaps = pairwise_iou(boxes[mine], true_boxes[theirs].reshape(-1, 4))
        for t, threshold in enumerate(IOU_THRESHOLDS):
            taken = np.zeros(len(theirs), dtype=bool)
            for row, detection in enumerate(mine):
                candidates = np.where(taken, -1.0, overlaps[row])
                best = int(np.argmax(candidates))
                if candidates[best] >= threshold:
                    taken[best], hits[detection, t] = True, True
    truths = np.bincount(true_labels.astype(np.int64), minlength=num_classes)
    return ImageMatches(scores, labels.astype(np.int64), hits, truths)


def mean_ap(matches: list[ImageMatches], num_classes: int) -> float:
    """COCO-style mAP@[.5:.95] over the classes with true boxes in `matches` (a resample may repeat images)."""
    scores = np.concatenate([m.scores for m in matches])
    labels = np.concatenate([m.labels for m in matches])
    hits = np.concatenate([m.true_positive for m in matches])
    truths = np.sum([m.truths for m in matches], axis=0)
    aps = []
    for label in range(num_classes):
        if truths[label] == 0:
            continue
        mine = labels == label
        order = np.argsort(-scores[mine], kind="mergesort")
        tp = np.cumsum(hits[mine][order], axis=0)
        fp = np.cumsum(~hits[mine][order], axis=0)
        recall = tp / truths[label]
        precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
        for t in range(len(IOU_THRESHOLDS)):
            envelope = np.maximum.accumulate(precision[::-1, t])[::-1] if len(precision) else precision[:, t]
            at = np.searchsorted(recall[:, t], RECALL_POINTS, side="left")
            aps.append(
                float(np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0).mean())
                if len(envelope)
                else 0.0
            )
    return float(np.mean(aps)) if aps else 0.0


def bootstrap_map(matches: list[ImageMatches], num_classes: int, seed: int, resamples: int) -> tuple[float, float]:
    """95% percentile interval of mAP over images resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = [
        mean_ap([matches[i] for i in rng.integers(0, len(matches), len(matches))], num_classes)
        for _ in range(resamples)
    ]
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def paired_map_difference(
    candidate: list[ImageMatches], champion: list[ImageMatches], num_classes: int, seed: int, resamples: int
) -> tuple[float, float, float]:
    """mAP of the candidate minus the champion's on the same images, with a paired 95% bootstrap interval
    (each resample draws the same images for both)."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples):
        picked = rng.integers(0, len(candidate), len(candidate))
        differences.append(
            mean_ap([candidate[i] for i in picked], num_classes) - mean_ap([champion[i] for i in picked], num_classes)
        )
    low, high = np.quantile(differences, [0.025, 0.975])
    return mean_ap(candidate, num_classes) - mean_ap(champion, num_classes), float(low), float(high)
