"""How a classifier's evidence is judged and shown (the `report` part): the gate's floors on accuracy, macro-F1
and every class's recall, the line a training run ends with, and the model card's metrics, notes and error
gallery. Light: no deep-learning framework, as the registry and review commands import it."""

from pathlib import Path

from cvops.config import GateParams
from cvops.evaluation.gate import GateCheck, check
from cvops.evaluation.reports import KIND_TITLES, Evaluation
from cvops.registry.aliases import CHAMPION
from cvops.registry.modelcard import ModelCard, Source, table

HIGH_ECE = 0.1
SLICE_COUNTS = "images"  # what a slice's n counts


def floors(evaluation: Evaluation, params: GateParams) -> list[GateCheck]:
    """The absolute floors: accuracy, macro-F1 and every class's recall."""
    metrics = evaluation.metrics
    return [
        check("accuracy", metrics["accuracy"], ">=", params.min_accuracy),
        check("macro_f1", metrics["macro_f1"], ">=", params.min_macro_f1),
        *(
            check(f"recall[{name}]", metrics[f"recall_{name}"], ">=", params.min_class_recall)
            for name in evaluation.class_names
        ),
    ]


def headline_metric(params: GateParams) -> tuple[str, float]:
    """Accuracy, which the gate compares with the champion's and checks on the shipped artifact, and its floor."""
    return "accuracy", params.min_accuracy


def champion_difference(evaluation: Evaluation) -> tuple[float | None, str]:
    """The paired accuracy difference from the champion, with its McNemar test."""
    champion = evaluation.champion
    assert champion is not None
    return champion.accuracy_difference, f"McNemar p={champion.mcnemar_p_value:.3g}"


def slice_floor(params: GateParams) -> float:
    return params.min_slice_accuracy


def slice_scores(evaluation: Evaluation) -> list[float | None]:
    """Each slice's accuracy, in the order of evaluation.slices."""
    return [piece.accuracy for piece in evaluation.slices]


def headline(metrics: dict[str, float]) -> str:
    return f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"


def purpose(classes: str, data_source: str) -> tuple[str, str]:
    """What the model is and what it does, for the card's first line and intended use."""
    return "image classifier", f"Sorts images like those of the `{data_source}` dataset into {classes}"


def card_metrics(card: ModelCard, picture: Source) -> list[str]:
    """Accuracy, macro-F1 and calibration with their intervals, per-class scores and the confusion matrix."""
    m = card.evaluation.metrics
    per_class = [
        [c, *(f"{m[f'{k}_{c}']:.4f}" for k in ("precision", "recall", "f1")), f"{m[f'support_{c}']:.0f}"]
        for c in card.dataset.class_names
    ]
    interval = {k: f"{m[f'{k}_ci95_low']:.4f}-{m[f'{k}_ci95_high']:.4f}" for k in ("accuracy", "macro_f1")}
    return [
        "## Metrics (test split)",
        table(
            ["metric", "value", "95% interval"],
            [
                ["accuracy", f"{m['accuracy']:.4f}", interval["accuracy"]],
                ["macro-F1", f"{m['macro_f1']:.4f}", interval["macro_f1"]],
                ["ECE (calibration)", f"{m['ece']:.4f}", ""],
            ],
        ),
        table(["class", "precision", "recall", "F1", "support"], per_class),
        f"![confusion matrix]({picture('confusion_matrix.png')})",
    ]


def quality_notes(evaluation: Evaluation) -> list[str]:
    """How well accuracy is known, calibration, and the class with the lowest recall."""
    m = evaluation.metrics
    low, high = m["accuracy_ci95_low"], m["accuracy_ci95_high"]
    notes = [f"Test accuracy is known only to within {low:.3f}-{high:.3f} (95% bootstrap interval)."]
    if m["ece"] > HIGH_ECE:
        notes.append(f"Scores are poorly calibrated (ECE {m['ece']:.3f}): do not read them as probabilities.")
    worst = min(evaluation.class_names, key=lambda name: m[f"recall_{name}"])
    notes.append(f"Weakest class: `{worst}` (recall {m[f'recall_{worst}']:.3f}).")
    return notes


def card_errors(evaluation: Evaluation, picture: Source) -> list[str]:
    """The gallery: what the model gets wrong most confidently, right least confidently, and where it and the
    champion disagree, as pictures and as a table of the images' paths."""
    gallery = evaluation.gallery
    if not gallery.images:
        return ["## Errors", "No gallery (evaluate.gallery_per_class is 0)."]
    parts = [
        "## Errors",
        f"Up to {gallery.per_class} test images per true class of each kind, with the "
        "model's answer and score (its probability for that answer).",
    ]
    for kind, title in KIND_TITLES.items():
        chosen = gallery.of(kind)
        if kind == "disagree" and not chosen:
            continue
        parts.append(f"**{title.capitalize()}** ({len(chosen)}):")
        if chosen:
            parts.append(f"![{title}]({picture(Path(gallery.sheets[kind]).name)})")
            rows = [
                [
                    f"`{image.path}`",
                    image.true,
                    f"{image.predicted} ({image.score:.2f})",
                    *([f"{image.champion} ({image.champion_score:.2f})"] if kind == "disagree" else []),
                ]
                for image in chosen
            ]
            champion = [CHAMPION] if kind == "disagree" else []
            parts.append(table(["image", "true", "this version", *champion], rows))
        else:
            parts.append(
                "none: the model gets every test image of these classes " + ("right." if kind == "wrong" else "wrong.")
            )
    return parts
