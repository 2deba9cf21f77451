"""Calibration, bootstrap intervals and the paired test, on constructed data with known answers."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from cvops.evaluation.statistics import (
    bootstrap_interval,
    expected_calibration_error,
    macro_f1,
    mcnemar_exact,
    paired_bootstrap_difference,
)


def test_ece_is_zero_when_confidence_matches_accuracy():
    # 10 images predicted with confidence 0.8, 8 of them right: perfectly calibrated.
    proba = np.tile([0.8, 0.2], (10, 1))
    y_true = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(proba, y_true) == pytest.approx(0.0)


def test_ece_measures_overconfidence():
    # confidence 0.9, accuracy 0.5: a gap of 0.4
    proba = np.tile([0.9, 0.1], (10, 1))
    y_true = np.array([0] * 5 + [1] * 5)
    assert expected_calibration_error(proba, y_true) == pytest.approx(0.4)


def test_macro_f1_is_scikit_learns_including_classes_missing_from_a_resample():
    rng = np.random.default_rng(3)
    for n, classes in [(5, 4), (40, 3), (300, 10), (7, 12)]:
        y_true, y_pred = rng.integers(0, classes, n), rng.integers(0, classes, n)
        y_pred[: n // 2] = y_true[: n // 2]  # some right, some classes only predicted or only true
        expected = f1_score(y_true, y_pred, average="macro", zero_division=0)
        assert macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert macro_f1(np.array([2, 2]), np.array([5, 5])) == 0.0  # nothing right: 0, not a division by zero


def test_bootstrap_interval_brackets_the_metric_narrows_with_data_and_is_seeded():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 400)
    y_pred = np.where(rng.random(400) < 0.8, y_true, 1 - y_true)  # about 80% right
    low, high = bootstrap_interval(y_true, y_pred, accuracy_score, seed=1)
    assert low < accuracy_score(y_true, y_pred) < high
    assert 0.05 < high - low < 0.12  # about 2 * 1.96 * sqrt(.8 * .2 / 400) = 0.078
    small = bootstrap_interval(y_true[:50], y_pred[:50], accuracy_score, seed=1)
    assert small[1] - small[0] > high - low
    assert bootstrap_interval(y_true, y_pred, accuracy_score, seed=1) == (low, high)


def test_mcnemar_counts_discordant_pairs_and_gives_the_exact_p_value():
    a = np.array([True] * 10 + [False] * 0 + [True] * 20)
    b = np.array([False] * 10 + [True] * 0 + [True] * 20)
    p, only_a, only_b = mcnemar_exact(a, b)
    assert (only_a, only_b) == (10, 0)
    assert p == pytest.approx(2 * 0.5**10)  # two-sided exact binomial, all 10 discordant pairs one way


def test_mcnemar_on_identical_predictions_finds_no_difference():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == (1.0, 0, 0)


def test_paired_bootstrap_difference_brackets_the_known_difference():
    # 200 paired images: A right on 180, B right on 160, B's right answers a subset of A's
    a = np.array([True] * 180 + [False] * 20)
    b = np.array([True] * 160 + [False] * 40)
    difference, low, high = paired_bootstrap_difference(a, b, seed=3)
    assert difference == pytest.approx(0.1)
    assert 0.05 < low < 0.1 < high < 0.15
    assert paired_bootstrap_difference(a, b, seed=3) == (difference, low, high)
    assert paired_bootstrap_difference(a, a, seed=3) == (0.0, 0.0, 0.0)
