"""The error gallery picks the images a reviewer should see, on cases whose answer is known by construction."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cvops.evaluation.gallery import TILE, build_gallery, pick_disagreements, pick_errors

CLASSES = ["cat", "dog", "owl"]


def answers(rows: list[tuple[int, float]], classes: int = 3) -> np.ndarray:
    """Class probabilities whose top class and its score are given per image; the rest shared evenly."""
    proba = np.zeros((len(rows), classes))
    for i, (answer, score) in enumerate(rows):
        proba[i] = (1 - score) / (classes - 1)
        proba[i, answer] = score
    return proba


# 10 test images: their true labels, and the model's answer with its score
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
OURS = answers(
    [
        (1, 0.9),
        (2, 0.6),
        (0, 0.8),
        (0, 0.4),  # cat: two wrong (0.9 surer), right at 0.8 and 0.4
        (1, 0.5),
        (1, 0.99),
        (0, 0.7),  # dog: right at 0.5 and 0.99, one wrong
        (2, 0.95),
        (2, 0.9),
        (2, 0.85),
    ]
)  # owl: all right


def test_each_class_shows_its_surest_mistakes_and_its_least_sure_right_answers() -> None:
    picked = pick_errors(LABELS, OURS, per_class=1)
    assert picked == [("wrong", 0), ("unsure", 3), ("wrong", 6), ("unsure", 4), ("unsure", 9)]
    assert pick_errors(LABELS, OURS, per_class=2) == [
        ("wrong", 0),
        ("wrong", 1),
        ("unsure", 3),
        ("unsure", 2),
        ("wrong", 6),
        ("unsure", 4),
        ("unsure", 5),
        ("unsure", 9),
        ("unsure", 8),
    ]


def test_disagreements_with_the_champion_come_surest_first_per_true_class() -> None:
    theirs = answers(
        [
            (0, 0.7),
            (2, 0.99),
            (0, 0.8),
            (1, 0.95),  # cat: differs on 0 and 3
            (1, 0.5),
            (1, 0.9),
            (1, 0.6),  # dog: differs on 6
            (2, 0.9),
            (0, 0.6),
            (2, 0.8),
        ]
    )  # owl: differs on 8
    # cat: image 3 (the champion's 0.95) before image 0 (our 0.9); image 1 answers the same (owl) in both
    assert pick_disagreements(LABELS, OURS, theirs, per_class=3) == [3, 0, 6, 8]
    assert pick_disagreements(LABELS, OURS, theirs, per_class=1) == [3, 6, 8]
    assert pick_disagreements(LABELS, OURS, OURS, per_class=3) == []


def test_the_gallery_names_each_image_with_both_answers_and_draws_one_sheet_per_kind(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    manifest = pd.DataFrame({"path": [f"raw/{CLASSES[label]}/{i}.png" for i, label in enumerate(LABELS)]})
    theirs = OURS.copy()
    theirs[6] = answers([(1, 0.8)])[0]  # the champion gets dog image 6 right

    gallery = build_gallery(images, LABELS, OURS, manifest, CLASSES, 1, tmp_path, champion_proba=theirs)

    assert [(image.kind, image.path) for image in gallery.of("wrong")] == [
        ("wrong", "raw/cat/0.png"),
        ("wrong", "raw/dog/6.png"),
    ]
    (disagreement,) = gallery.of("disagree")
    assert (disagreement.true, disagreement.predicted, disagreement.champion) == ("dog", "cat", "dog")
    assert round(disagreement.score, 2) == 0.7 and round(disagreement.champion_score or 0, 2) == 0.8
    assert disagreement.caption() == "true dog\nthis cat 0.70\nchampion dog 0.80"
    assert set(gallery.sheets) == {"wrong", "unsure", "disagree"}
    wrong_sheet = Image.open(gallery.sheets["wrong"])
    assert wrong_sheet.width > 2 * TILE and wrong_sheet.height > TILE  # two images side by side, with captions
    # the first tile is image 0, enlarged
    tile = np.asarray(wrong_sheet)[8 : 8 + TILE, 8 : 8 + TILE]
    assert (tile[:: TILE // 16, :: TILE // 16][:16, :16] == images[0]).all()


def test_no_gallery_when_it_is_turned_off(tmp_path: Path) -> None:
    manifest = pd.DataFrame({"path": [str(i) for i in range(10)]})
    gallery = build_gallery(np.zeros((10, 4, 4, 3), np.uint8), LABELS, OURS, manifest, CLASSES, 0, tmp_path)
    assert gallery.images == [] and gallery.sheets == {} and list(tmp_path.iterdir()) == []
