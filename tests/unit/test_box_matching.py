"""mAP from cached per-image matches agrees with COCO's own (torchmetrics on faster-coco-eval), and its
bootstrap intervals behave: they hold the point estimate, and a better detector's paired difference is
positive."""

import numpy as np

from cvops.tasks.detection.matching import bootstrap_map, match_image, mean_ap, paired_map_difference
from cvops.tasks.detection.model import mean_average_precision

CLASSES = ["a", "b", "c"]


def scene_set(seed: int, noise: float, images: int = 60):
    """True boxes, and detections: each true box found with `noise` pixels of jitter and a random score,
    some missed, plus false alarms."""
    rng = np.random.default_rng(seed)
    truths, found = [], []
    for _ in range(images):
        n = int(rng.integers(1, 5))
        corner = rng.uniform(0, 150, (n, 2))
        size = rng.uniform(10, 60, (n, 2))
        boxes = np.hstack([corner, corner + size]).astype(np.float32)
        labels = rng.integers(0, len(CLASSES), n)
        kept = rng.random(n) > 0.15
        jitter = rng.normal(0, noise, (n, 4)).astype(np.float32)
        alarms = rng.uniform(0, 150, (2, 2))
        false = np.hstack([alarms, alarms + 20]).astype(np.float32)
        found.append(
            {
                "boxes": np.vstack([(boxes + jitter)[kept], false]),
                "scores": np.concatenate([rng.uniform(0.3, 1.0, kept.sum()), rng.uniform(0, 0.6, 2)]),
                "labels": np.concatenate([labels[kept], rng.integers(0, len(CLASSES), 2)]),
            }
        )
        truths.append((boxes, labels))
    return found, truths


def matched(found, truths):
    return [
        match_image(f["boxes"], f["scores"], f["labels"], b, labels, len(CLASSES))
        for f, (b, labels) in zip(found, truths, strict=True)
    ]


def test_cached_matches_give_cocos_map():
    for noise in (1.0, 4.0):
        found, truths = scene_set(seed=int(noise), noise=noise)
        coco = mean_average_precision(found, truths, CLASSES)["map"]
        assert abs(mean_ap(matched(found, truths), len(CLASSES)) - coco) < 0.005, coco


def test_bootstrap_interval_holds_the_estimate_and_a_better_detector_wins_the_paired_test():
    found, truths = scene_set(seed=0, noise=1.0)
    sharp = matched(found, truths)
    low, high = bootstrap_map(sharp, len(CLASSES), seed=0, resamples=200)
    assert low < mean_ap(sharp, len(CLASSES)) < high and high - low < 0.3
    blurred, _ = scene_set(seed=0, noise=6.0)  # the same scenes (one seed), boxes placed worse
    difference, low, high = paired_map_difference(sharp, matched(blurred, truths), len(CLASSES), seed=0, resamples=200)
    assert 0 < low < difference < high
