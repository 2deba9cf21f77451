"""Test-split metrics and the confusion-matrix plot."""

import numpy as np
import pytest
from PIL import Image

from cvops.evaluation import classification_metrics, plot_confusion_matrix


def test_metrics_on_a_hand_checked_example():
    # true:  a a b b      predicted: a b b b
    metrics = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    assert metrics["accuracy"] == pytest.approx(3 / 4)
    assert metrics["recall_a"] == pytest.approx(1 / 2) and metrics["recall_b"] == pytest.approx(1.0)
    assert metrics["precision_a"] == pytest.approx(1.0) and metrics["precision_b"] == pytest.approx(2 / 3)
    f1_a, f1_b = 2 * 1 * 0.5 / 1.5, 2 * (2 / 3) * 1 / (5 / 3)
    assert metrics["f1_a"] == pytest.approx(f1_a) and metrics["macro_f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert metrics["support_a"] == metrics["support_b"] == 2


def test_class_absent_from_the_test_split_scores_zero_not_nan():
    metrics = classification_metrics(np.array([0, 0]), np.array([0, 0]), ["a", "b", "c"])
    assert metrics["support_c"] == 0 and metrics["recall_c"] == 0.0
    assert not any(np.isnan(v) for v in metrics.values())


def test_confusion_matrix_png(tmp_path):
    y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1])
    path = plot_confusion_matrix(y_true, y_pred, ["x", "y", "z"], tmp_path / "plots" / "cm.png")
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
