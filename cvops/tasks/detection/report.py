"""How a detector's evidence is judged and shown (the `report` part): the gate's floors on COCO mAP and every
class's AP, the line a training run ends with, and the model card's metrics and notes. Light: no deep-learning
framework, as the registry and review commands import it."""

from pathlib import Path

from cvops.config import GateParams
from cvops.evaluation.gate import GateCheck, check
from cvops.evaluation.reports import Evaluation
from cvops.registry.modelcard import ModelCard, Source, table

SLICE_COUNTS = "images (object_size: boxes)"  # what a slice's n counts


def floors(evaluation: Evaluation, params: GateParams) -> list[GateCheck]:
    """The absolute floors: mAP and every class's AP. A class without test boxes has AP -1 (COCO's "none"):
    not judged."""
    metrics = evaluation.metrics
    checks = [check("mAP", metrics["map"], ">=", params.min_map)]
    for name in evaluation.class_names:
        ap = metrics.get(f"ap_{name}", -1.0)
        checks.append(
            check(
                f"AP[{name}]",
                ap if ap >= 0 else None,
                ">=",
                params.min_class_ap,
                "" if ap >= 0 else "no test boxes",
            )
        )
    tracking = (
        ("tracking IDF1", "tracking_idf1", ">=", params.min_idf1),
        ("ID switches a true track", "tracking_id_switches_per_track", "<=", params.max_id_switches_per_track),
    )
    for name, metric, rule, limit in tracking:
        if limit is not None and metric in metrics:
            checks.append(check(name, metrics[metric], rule, limit))  # type: ignore[arg-type]
        elif limit is not None:  # asked for, and nothing to judge: not a pass
            checks.append(
                GateCheck(
                    name=name,
                    value=None,
                    rule=rule,
                    threshold=limit,
                    verdict="fail",
                    note="no tracking score: set evaluate.tracking",
                )
            )
    return checks


def headline_metric(params: GateParams) -> tuple[str, float]:
    """mAP, which the gate compares with the champion's and checks on the shipped artifact, and its floor."""
    return "mAP", params.min_map


def champion_difference(evaluation: Evaluation) -> tuple[float | None, str]:
    """The paired mAP difference from the champion, with its bootstrap interval."""
    champion = evaluation.champion
    assert champion is not None
    note = f"paired 95% interval {champion.difference_ci95_low:+.3f} to {champion.difference_ci95_high:+.3f}"
    return champion.map_difference, note


def slice_floor(params: GateParams) -> float:
    return params.min_slice_map


def slice_scores(evaluation: Evaluation) -> list[float | None]:
    """Each slice's mAP, in the order of evaluation.slices."""
    return [piece.mean_ap for piece in evaluation.slices]


def headline(metrics: dict[str, float]) -> str:
    return f"mAP@[.5:.95] {metrics['map']:.4f}, mAP@.5 {metrics['map_50']:.4f}"


def purpose(classes: str, data_source: str) -> tuple[str, str]:
    """What the model is and what it does, for the card's first line and intended use."""
    return "object detector (FCOS)", f"Finds and boxes {classes} in images like those of the `{data_source}` dataset"


def card_metrics(card: ModelCard, picture: Source) -> list[str]:
    """COCO mAP with its interval, per object size and per class, and test images with their boxes drawn."""
    m = card.evaluation.metrics
    interval = f"{m['map_ci95_low']:.4f}-{m['map_ci95_high']:.4f}"
    rows = [
        ["mAP@[.5:.95]", f"{m['map']:.4f}", interval],
        ["mAP@.5", f"{m['map_50']:.4f}", ""],
        ["mAP@.75", f"{m['map_75']:.4f}", ""],
        ["recall (100 boxes an image)", f"{m['recall']:.4f}", ""],
    ]
    rows += [
        [f"mAP, {size} objects", f"{m[f'map_{size}']:.4f}", ""]
        for size in ("small", "medium", "large")
        if m[f"map_{size}"] >= 0
    ]
    per_class = [
        [c, *(f"{m[f'{k}_{c}']:.4f}" if m.get(f"{k}_{c}", -1.0) >= 0 else "no test boxes" for k in ("ap", "recall"))]
        for c in card.dataset.class_names
    ]
    return [
        "## Metrics (test split, COCO, in the original images' pixels)",
        table(["metric", "value", "95% interval"], rows),
        table(["class", "AP", "recall"], per_class),
        "Test images with their true boxes (green) and the detections the model serves (red, with class and score):",
        f"![test images with true and predicted boxes]({picture('examples.png')})",
        *_tracking(card, picture),
    ]


def _tracking(card: ModelCard, picture: Source) -> list[str]:
    """The tracking scores (evaluate.tracking), as `cvops run video` tracks, and frames of the first video."""
    m = card.evaluation.metrics
    if "tracking_hota" not in m:
        return []
    rows = [
        ["HOTA", f"{m['tracking_hota']:.4f}"],
        ["IDF1", f"{m['tracking_idf1']:.4f}"],
        ["MOTA", f"{m['tracking_mota']:.4f}"],
        ["ID switches", f"{m['tracking_id_switches']:.0f} ({m['tracking_id_switches_per_track']:.2f} a true track)"],
    ]
    return [
        f"## Tracking ({m['tracking_frames']:.0f} frames of videos with true tracks: `evaluate.tracking`)",
        f"Videos: `{card.evaluation.tracking_data}`.",
        table(["metric", "value"], rows),
        "Frames of the first video, each box in its track's colour with its id:",
        f"![tracked frames]({picture(Path(card.evaluation.tracking_png).name)})",
    ]


def quality_notes(evaluation: Evaluation) -> list[str]:
    """How well mAP is known, and the class with the lowest AP."""
    m = evaluation.metrics
    scored = [name for name in evaluation.class_names if m.get(f"ap_{name}", -1.0) >= 0]
    notes = [
        f"Test mAP@[.5:.95] is known only to within {m['map_ci95_low']:.3f}-{m['map_ci95_high']:.3f} "
        "(95% bootstrap interval over images)."
    ]
    if scored:
        worst = min(scored, key=lambda name: m[f"ap_{name}"])
        notes.append(f"Weakest class: `{worst}` (AP {m[f'ap_{worst}']:.3f}, recall {m[f'recall_{worst}']:.3f}).")
    return notes


def card_errors(evaluation: Evaluation, picture: Source) -> list[str]:
    """None: a detector has no error gallery (its card shows drawn test images instead)."""
    return []
