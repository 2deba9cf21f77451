"""The model card reads as the evidence: data, metrics with intervals, slices, gate, comparison, limits."""

import numpy as np
import pandas as pd

from cvops.config import GateParams
from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import plot_confusion_matrix
from cvops.evaluation.gallery import build_gallery
from cvops.evaluation.gate import decide
from cvops.evaluation.reports import ChampionComparison, Evaluation, Footprint, SliceMetrics
from cvops.registry.modelcard import ModelCard, write_model_card
from cvops.registry.tracking import TrainedModel


def card(tmp_path, recall_bad: float = 0.9, champion: ChampionComparison | None = None) -> ModelCard:
    png = plot_confusion_matrix(np.array([0, 1]), np.array([0, 1]), ["bad", "ok"], tmp_path / "cm.png")
    metrics = {
        "accuracy": 0.9,
        "macro_f1": 0.88,
        "ece": 0.15,
        "accuracy_ci95_low": 0.86,
        "accuracy_ci95_high": 0.93,
        "macro_f1_ci95_low": 0.84,
        "macro_f1_ci95_high": 0.91,
    }
    for name, recall in (("bad", recall_bad), ("ok", 0.95)):
        metrics |= {f"precision_{name}": 0.9, f"recall_{name}": recall, f"f1_{name}": 0.9, f"support_{name}": 60.0}
    evaluation = Evaluation(
        metrics=metrics,
        class_names=["bad", "ok"],
        confusion_matrix_png=str(png),
        num_images=120,
        slices=[SliceMetrics(attribute="cell_type", value="poly", n=12, accuracy=0.75, macro_f1=0.7)],
        invariance={"hflip": 0.96},
        footprint=Footprint(format="torch", size_mb=13, latency_ms=9, threads=2),
        champion=champion,
    )
    trained = TrainedModel(
        model_uri="models:/m-1",
        run_id="r1",
        architecture="resnet10t",
        class_names=["bad", "ok"],
        image_size=64,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        best_epoch=3,
    )
    counts = {"train": {"bad": 300, "ok": 280}, "val": {"bad": 60}, "test": {"bad": 60, "ok": 60}}
    dataset = DatasetRef(
        prepared_dir=".", class_names=["bad", "ok"], image_size=64, data_version="abc123", counts=counts
    )
    return ModelCard(
        model_name="cvops-classifier",
        version="7",
        data_source="elpv",
        trained=trained,
        dataset=dataset,
        evaluation=evaluation,
        decision=decide(evaluation, GateParams()),
        lineage={"git_commit": "f00d", "data_version": "abc123"},
    )


def test_card_holds_every_section_with_the_numbers(tmp_path):
    markdown, html = write_model_card(card(tmp_path), tmp_path / "card")
    text = markdown.read_text()
    for section in (
        "## Intended use",
        "## Data",
        "## Metrics (test split)",
        "## Slices",
        "## Behaviour",
        "## Gate",
        "## Comparison with the champion",
        "## Known limitations",
        "## Lineage",
    ):
        assert section in text
    assert "| bad | 300 | 60 | 60 |" in text and "| ok | 280 | 0 | 60 |" in text  # per-class counts per split
    assert "0.8600-0.9300" in text  # the accuracy interval
    assert "gate: PASSED" in text and "`f00d`" in text
    assert "There was no champion" in text
    assert (markdown.parent / "confusion_matrix.png").is_file() and "](confusion_matrix.png)" in text
    page = html.read_text()
    assert "<table>" in page and "data:image/png;base64," in page  # self-contained: opens from anywhere


def test_the_errors_section_shows_the_gallery_pictures_and_names_each_image(tmp_path):
    images = np.full((4, 8, 8, 3), 200, np.uint8)
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]])  # image 0: "bad" called ok at 0.8
    champion = np.array([[0.9, 0.1], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]])  # ... which the champion gets right
    manifest = pd.DataFrame({"path": ["bad/a.png", "bad/b.png", "bad/c.png", "ok/d.png"]})
    gallery = build_gallery(images, np.array([0, 0, 0, 1]), proba, manifest, ["bad", "ok"], 2, tmp_path / "g", champion)
    model_card = card(tmp_path)
    model_card.evaluation.gallery = gallery
    markdown, html = write_model_card(model_card, tmp_path / "card")
    errors = markdown.read_text().split("## Errors")[1].split("## ")[0]
    wrong = errors.split("**Most confidently wrong** (1):")[1].split("**")[0]
    assert "![most confidently wrong](gallery_wrong.png)" in wrong and "| `bad/a.png` | bad | ok (0.80) |" in wrong
    unsure = errors.split("**Right with the least confidence** (3):")[1].split("**")[0]
    assert unsure.index("`bad/b.png`") < unsure.index("`bad/c.png`")  # 0.6 before 0.9
    assert "| `bad/a.png` | bad | ok (0.80) | bad (0.90) |" in errors.split("disagree** (1):")[1]
    for sheet in ("gallery_wrong.png", "gallery_unsure.png", "gallery_disagree.png"):
        assert (markdown.parent / sheet).is_file()
    assert html.read_text().count("data:image/png;base64,") == 4  # the confusion matrix and three sheets


def test_limitations_come_from_the_evidence(tmp_path):
    text = write_model_card(card(tmp_path, recall_bad=0.3), tmp_path / "card")[0].read_text()
    limits = text.split("## Known limitations")[1].split("## Lineage")[0]
    assert "Failed gate check: recall[bad] = 0.3" in limits
    assert "Weakest class: `bad`" in limits
    assert "poorly calibrated (ECE 0.150)" in limits
    assert "Not gated: slice cell_type=poly accuracy (n=12 < min_slice_size 30)" in limits
    assert "gate **FAILED**" in text


def test_champion_comparison_is_written_out(tmp_path):
    comparison = ChampionComparison(
        champion_version="5",
        comparable=True,
        n=120,
        candidate_accuracy=0.9,
        champion_accuracy=0.85,
        accuracy_difference=0.05,
        difference_ci95_low=0.01,
        difference_ci95_high=0.09,
        candidate_macro_f1=0.88,
        champion_macro_f1=0.8,
        mcnemar_p_value=0.03,
        only_candidate_correct=9,
        only_champion_correct=3,
    )
    text = write_model_card(card(tmp_path, champion=comparison), tmp_path / "card")[0].read_text()
    assert "champion v5" in text and "+0.0500" in text and "p = 0.03 on 120 images" in text


def test_a_detectors_card_shows_map_per_class_ap_and_the_drawn_examples(tmp_path):
    from PIL import Image

    examples = tmp_path / "examples.png"
    Image.new("RGB", (64, 32), "white").save(examples)
    metrics = {
        "map": 0.41,
        "map_50": 0.7,
        "map_75": 0.4,
        "map_small": 0.3,
        "map_medium": 0.5,
        "map_large": -1.0,
        "recall": 0.6,
        "map_ci95_low": 0.37,
        "map_ci95_high": 0.45,
        "ap_cat": 0.2,
        "recall_cat": 0.5,
        "ap_dog": 0.62,
        "recall_dog": 0.7,
        "ap_fox": -1.0,
        "recall_fox": -1.0,
    }
    champion = ChampionComparison(
        champion_version="3",
        comparable=True,
        n=80,
        candidate_map=0.41,
        champion_map=0.39,
        map_difference=0.02,
        difference_ci95_low=-0.01,
        difference_ci95_high=0.05,
    )
    small = SliceMetrics(attribute="object_size", value="small", n=140, mean_ap=0.3)
    evaluation = Evaluation(
        metrics=metrics,
        class_names=["cat", "dog", "fox"],
        confusion_matrix_png="",
        examples_png=str(examples),
        num_images=80,
        task="detection",
        champion=champion,
        slices=[small],
    )
    detection = card(tmp_path).model_copy(
        update={
            "evaluation": evaluation,
            "decision": decide(evaluation, GateParams()),
            "model_name": "cvops-detector",
            "dataset": DatasetRef(
                prepared_dir=".",
                class_names=["cat", "dog", "fox"],
                image_size=160,
                task="detection",
                counts={"train": {"cat": 90, "dog": 80}, "test": {"cat": 20, "dog": 30}},
            ),
        }
    )
    markdown, html = write_model_card(detection, tmp_path / "card")
    text = markdown.read_text()
    assert "object detector (FCOS)" in text and "Finds and boxes `cat`, `dog`, `fox`" in text
    assert "| mAP@[.5:.95] | 0.4100 | 0.3700-0.4500 |" in text and "mAP, large objects" not in text
    assert "| fox | no test boxes | no test boxes |" in text and "Boxes per class and split" in text
    assert "| mAP@[.5:.95] | 0.4100 | 0.3900 |" in text and "paired bootstrap 95% interval" in text
    assert "| object_size | small | 140 | 0.3000 |" in text
    assert "Weakest class: `cat` (AP 0.200" in text and "within 0.370-0.450" in text
    assert (markdown.parent / "examples.png").is_file() and "](examples.png)" in text
    assert "data:image/png;base64," in html.read_text()
