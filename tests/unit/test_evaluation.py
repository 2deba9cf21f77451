"""Test-split evidence: metrics, confusion matrix, slices, behavioural invariance, paired champion comparison."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import (
    CandidateAnswers,
    Champion,
    champion_inputs,
    classification_metrics,
    compare_with_champion,
    invariance,
    plot_confusion_matrix,
    slice_metrics,
)


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


class LeftVersusRight(torch.nn.Module):
    """Class 1 when the right half of the image is brighter than the left half: flip-sensitive by design."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        score = x[..., half:].mean(dim=(1, 2, 3)) - x[..., :half].mean(dim=(1, 2, 3))
        return torch.stack([-score, score], dim=1) * 10


def half_bright_images(right_bright: list[bool], size: int = 8) -> np.ndarray:
    images = np.full((len(right_bright), size, size, 3), 40, dtype=np.uint8)
    for image, right in zip(images, right_bright, strict=True):
        (image[:, size // 2 :] if right else image[:, : size // 2])[...] = 220
    return images


def test_slices_by_metadata_and_brightness_tertile():
    labels = np.array([0, 0, 1, 1, 0, 1])
    predicted = np.array([0, 1, 1, 1, 0, 0])  # wrong on rows 1 and 5
    manifest = pd.DataFrame(
        {
            "cell_type": ["mono", "mono", "mono", "poly", "poly", None],
            "source": ["production", None, None, None, None, "production"],
        }
    )
    images = np.stack([np.full((4, 4, 3), level, dtype=np.uint8) for level in (10, 20, 100, 110, 200, 210)])
    slices = {
        (s.attribute, s.value): s
        for s in slice_metrics(labels, predicted, manifest, images, ["cell_type", "absent"], 3)
    }
    assert set(slices) == {
        ("cell_type", "mono"),
        ("cell_type", "poly"),
        ("cell_type", "unknown"),
        ("recent", "production"),
        ("brightness", "dark"),
        ("brightness", "mid"),
        ("brightness", "bright"),
    }
    assert (slices["recent", "production"].n, slices["recent", "production"].accuracy) == (2, 0.5)
    assert (slices["cell_type", "mono"].n, slices["cell_type", "mono"].accuracy) == (3, pytest.approx(2 / 3))
    assert slices["cell_type", "poly"].accuracy == 1.0 and slices["cell_type", "unknown"].accuracy == 0.0
    assert [slices["brightness", v].accuracy for v in ("dark", "mid", "bright")] == [0.5, 1.0, 0.5]
    assert all(slices["brightness", v].n == 2 for v in ("dark", "mid", "bright"))


def test_invariance_is_the_share_of_predictions_a_transform_keeps():
    images = half_bright_images([True, False, True, True])
    model = LeftVersusRight()
    predicted = np.array([1, 0, 1, 1])
    shares = invariance(model, images, predicted, ("hflip", "vflip"), torch.device("cpu"))
    assert shares == {"hflip": 0.0, "vflip": 1.0}


def test_champion_comparison_on_the_same_images_has_the_known_answer():
    right = [True] * 6 + [False] * 4
    images, labels = half_bright_images(right), np.array([1] * 6 + [0] * 4)
    ref = DatasetRef(prepared_dir=".", class_names=["left", "right"], image_size=8, counts={}, data_version="d1")
    champion = Champion(
        version="4", model=LeftVersusRight(), class_names=["left", "right"], image_size=8, data_version="d1"
    )
    candidate = labels.copy()
    candidate[:3] = 0  # the candidate misses 3 images the champion gets right
    manifest = pd.DataFrame({"source": [None] * 7 + ["production"] * 3})  # the last 3: the `recent` slice
    answers = CandidateAnswers(images, labels, manifest, candidate)
    result, proba = compare_with_champion(champion, ref, answers, torch.device("cpu"), seed=0, resamples=200)
    assert proba is not None and proba.argmax(axis=1).tolist() == labels.tolist()  # the champion's answers
    assert (result.recent_n, result.candidate_recent_accuracy, result.champion_recent_accuracy) == (3, 1.0, 1.0)
    assert result.comparable and result.champion_version == "4" and result.n == 10
    assert (result.candidate_accuracy, result.champion_accuracy) == (0.7, 1.0)
    assert result.accuracy_difference == pytest.approx(-0.3)
    assert (result.only_candidate_correct, result.only_champion_correct) == (0, 3)
    assert result.mcnemar_p_value == pytest.approx(0.25)  # 3 discordant pairs all one way: 2 * 0.5**3
    assert result.note == ""


def test_champion_with_other_classes_is_not_compared():
    ref = DatasetRef(prepared_dir=".", class_names=["a", "b"], image_size=8, counts={})
    champion = Champion(version="1", model=LeftVersusRight(), class_names=["x", "y"], image_size=8)
    images = half_bright_images([True])
    answers = CandidateAnswers(images, np.array([1]), pd.DataFrame(index=[0]), np.array([1]))
    result, proba = compare_with_champion(champion, ref, answers, torch.device("cpu"), seed=0, resamples=100)
    assert not result.comparable and "other classes" in result.note and proba is None


def test_a_champion_that_resizes_by_another_rule_sees_the_originals_by_its_rule(tmp_path):
    """Stretched test images would not be what a letterboxing champion is served: its inputs are made from
    the originals, by its rule (the grey border above and below a wide image)."""
    (tmp_path / "raw" / "a").mkdir(parents=True)
    Image.new("RGB", (40, 10), (250, 250, 250)).save(tmp_path / "raw" / "a" / "wide.png")
    ref = DatasetRef(prepared_dir=str(tmp_path / "prepared"), class_names=["a"], image_size=8, counts={})
    champion = Champion(version="2", model=LeftVersusRight(), class_names=["a"], image_size=8, resize="letterbox")
    stretched = np.full((1, 8, 8, 3), 250, dtype=np.uint8)  # the candidate's own (stretch) input
    images, note = champion_inputs(champion, ref, stretched, pd.DataFrame({"path": ["a/wide.png"]}))
    assert images.shape == (1, 8, 8, 3) and (images[0, 0] == 114).all() and (images[0, 4] == 250).all()
    assert "by the champion's rule (letterbox, full decoder)" in note
