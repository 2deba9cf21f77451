"""Statistics for evaluation evidence: calibration, bootstrap intervals, paired comparison."""

from collections.abc import Callable

import numpy as np
from scipy.stats import binomtest


def expected_calibration_error(proba: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy, over equal-width bins."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(gap)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in either array, 0 for a class never predicted right: scikit-learn's
    f1_score(average="macro", zero_division=0), in numpy, since a bootstrap calls it a thousand times (sklearn's
    argument checks took 1.7 s of every evaluation)."""
    classes, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    truth, predicted = codes[: len(y_true)], codes[len(y_true) :]
    hits = np.bincount(truth[truth == predicted], minlength=len(classes))
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (true count + predicted count), never 0 / 0 for a present class
    sizes = np.bincount(truth, minlength=len(classes)) + np.bincount(predicted, minlength=len(classes))
    return float(np.mean(2 * hits / sizes))


def bootstrap_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    *,
    seed: int,
    resamples: int = 1000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric` over test images resampled with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    scores = [metric(y_true[idx], y_pred[idx]) for idx in (rng.integers(0, n, n) for _ in range(resamples))]
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """Exact McNemar test on paired predictions of the same images.

    Returns (two-sided p-value, images only A got right, images only B got right).
    """
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue), only_a, only_b


def paired_bootstrap_difference(
    correct_a: np.ndarray, correct_b: np.ndarray, seed: int, resamples: int = 1000, level: float = 0.95
) -> tuple[float, float, float]:
    """Accuracy of A minus accuracy of B on the same images, with a paired percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    n = len(correct_a)
    delta = correct_a.astype(np.float64) - correct_b.astype(np.float64)
    scores = delta[rng.integers(0, n, (resamples, n))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(delta.mean()), float(low), float(high)
