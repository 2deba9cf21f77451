"""Model cards: one Markdown and one self-contained HTML page per registered version."""

import base64
from collections.abc import Callable
from html import escape
from pathlib import Path

from markdown_it import MarkdownIt
from pydantic import BaseModel

from cvops.data.prepare import DatasetRef
from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import KIND_TITLES, ChampionComparison, Evaluation, QuantizationReport
from cvops.registry.aliases import CHAMPION
from cvops.registry.lineage import LINEAGE_KEYS
from cvops.registry.tracking import TrainedModel

HIGH_ECE = 0.1
Source = Callable[[str], str]  # a picture's file name -> what the page links


class Teacher(BaseModel):
    """A distilled student's teacher: its version and evidence, for the card's comparison."""

    version: str
    architecture: str
    evaluation: Evaluation
    quantization: QuantizationReport | None = None


class ModelCard(BaseModel):
    model_name: str
    version: str
    data_source: str
    trained: TrainedModel
    dataset: DatasetRef
    evaluation: Evaluation
    decision: GateDecision
    lineage: dict[str, str]
    quantization: QuantizationReport | None = None
    growth: dict[str, dict[str, dict[str, int]]] = {}  # data version -> source -> class -> images (versions.py)
    teacher: Teacher | None = None  # a distilled student's


def _cell(text: str) -> str:
    """A table cell: a class name may hold `|`, which would split the cell."""
    return str(text).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _quality_notes(evaluation: Evaluation) -> list[str]:
    """How well the headline metric is known, calibration, and the weakest class."""
    m = evaluation.metrics
    if evaluation.task == "detection":
        scored = [name for name in evaluation.class_names if m.get(f"ap_{name}", -1.0) >= 0]
        notes = [
            f"Test mAP@[.5:.95] is known only to within {m['map_ci95_low']:.3f}-{m['map_ci95_high']:.3f} "
            "(95% bootstrap interval over images)."
        ]
        if scored:
            worst = min(scored, key=lambda name: m[f"ap_{name}"])
            notes.append(f"Weakest class: `{worst}` (AP {m[f'ap_{worst}']:.3f}, recall {m[f'recall_{worst}']:.3f}).")
        return notes
    low, high = m["accuracy_ci95_low"], m["accuracy_ci95_high"]
    notes = [f"Test accuracy is known only to within {low:.3f}-{high:.3f} (95% bootstrap interval)."]
    if m["ece"] > HIGH_ECE:
        notes.append(f"Scores are poorly calibrated (ECE {m['ece']:.3f}): do not read them as probabilities.")
    worst = min(evaluation.class_names, key=lambda name: m[f"recall_{name}"])
    notes.append(f"Weakest class: `{worst}` (recall {m[f'recall_{worst}']:.3f}).")
    return notes


def limitations(card: ModelCard) -> list[str]:
    """What a reviewer should know before trusting the model, derived from its own evidence."""
    evaluation, gate = card.evaluation, card.decision
    notes = [
        f"Trained and tested only on the `{card.data_source}` data ({card.evaluation.num_images} test images); "
        "images from other sources, cameras or preprocessing are outside its tested range.",
        *_quality_notes(evaluation),
    ]
    for check in gate.checks:
        if check.verdict == "fail":
            needs = f"{check.rule} {check.threshold:.4g}"
            notes.append(f"Failed gate check: {check.name} = {check.value:.4g} (needs {needs}).")
        elif check.verdict == "skip" and check.name.startswith("slice"):
            notes.append(f"Not gated: {check.name} ({check.note}).")
    return notes


def _data(card: ModelCard) -> list[str]:
    dataset = card.dataset
    return [
        "## Data",
        f"Data version `{dataset.data_version or 'unversioned'}` (DVC hash of the prepared data). "
        f"{dataset.unit.capitalize()} per class and split:",
        _table(
            ["class", *dataset.counts],
            [[c, *(str(dataset.counts[s].get(c, 0)) for s in dataset.counts)] for c in dataset.class_names],
        ),
        *_growth(card),
    ]


def pictures(evaluation: Evaluation) -> dict[str, Path]:
    """Every picture the card shows, by the file name the card gives it: the confusion matrix (a detector's
    example images), the gallery's sheets and their Grad-CAM overlays."""
    named = {evaluation.confusion_matrix_png: "confusion_matrix.png", evaluation.examples_png: "examples.png"}
    return {named.get(path, Path(path).name): Path(path) for path in evaluation.pictures()}


def _detection_metrics(card: ModelCard, picture: Source) -> list[str]:
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
        *_data(card),
        "## Metrics (test split, COCO, in the original images' pixels)",
        _table(["metric", "value", "95% interval"], rows),
        _table(["class", "AP", "recall"], per_class),
        "Test images with their true boxes (green) and the detections the model serves (red, with class and score):",
        f"![test images with true and predicted boxes]({picture('examples.png')})",
    ]


def _data_and_metrics(card: ModelCard, picture: Source) -> list[str]:
    if card.evaluation.task == "detection":
        return _detection_metrics(card, picture)
    dataset, evaluation = card.dataset, card.evaluation
    m = evaluation.metrics
    per_class = [
        [c, *(f"{m[f'{k}_{c}']:.4f}" for k in ("precision", "recall", "f1")), f"{m[f'support_{c}']:.0f}"]
        for c in dataset.class_names
    ]
    interval = {k: f"{m[f'{k}_ci95_low']:.4f}-{m[f'{k}_ci95_high']:.4f}" for k in ("accuracy", "macro_f1")}
    return [
        *_data(card),
        "## Metrics (test split)",
        _table(
            ["metric", "value", "95% interval"],
            [
                ["accuracy", f"{m['accuracy']:.4f}", interval["accuracy"]],
                ["macro-F1", f"{m['macro_f1']:.4f}", interval["macro_f1"]],
                ["ECE (calibration)", f"{m['ece']:.4f}", ""],
            ],
        ),
        _table(["class", "precision", "recall", "F1", "support"], per_class),
        f"![confusion matrix]({picture('confusion_matrix.png')})",
    ]


def _growth(card: ModelCard) -> list[str]:
    """How the data grew: images per source and class of each data version, oldest first."""
    if not card.growth:
        return []
    classes = card.dataset.class_names
    rows = [
        [
            f"`{version[:8] or 'unversioned'}`",
            source,
            *(str(counts.get(c, 0)) for c in classes),
            str(sum(counts.values())),
        ]
        for version, sources in card.growth.items()
        for source, counts in sources.items()
    ]
    return [
        "How the data grew (images in train, val and test per data version, source and class; production: "
        "labelled production images, `cvops labels import`):",
        _table(["data version", "source", *classes, "total"], rows),
    ]


def _slices_and_behaviour(evaluation: Evaluation) -> list[str]:
    names = list(evaluation.slices[0].scores) if evaluation.slices else []
    slices = [[s.attribute, s.value, str(s.n), *(f"{v:.4f}" for v in s.scores.values())] for s in evaluation.slices]
    counted = "images" if evaluation.task == "classification" else "images (object_size: boxes)"
    parts = [
        "## Slices",
        _table(["attribute", "value", counted, *names], slices)
        if slices
        else "No slices (no metadata columns and brightness slicing off).",
    ]
    if evaluation.invariance:
        parts += [
            "## Behaviour",
            _table(["transform", "same prediction"], [[t, f"{v:.1%}"] for t, v in evaluation.invariance.items()]),
        ]
    return parts


def _errors(evaluation: Evaluation, picture: Source) -> list[str]:
    """The gallery: what the model gets wrong most confidently, right least confidently, and where it and the
    champion disagree, as pictures and as a table of the images' paths."""
    gallery = evaluation.gallery
    if evaluation.task == "detection":
        return []
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
            parts.append(_table(["image", "true", "this version", *champion], rows))
        else:
            parts.append(
                "none: the model gets every test image of these classes " + ("right." if kind == "wrong" else "wrong.")
            )
    return parts


def _saliency(evaluation: Evaluation, picture: Source) -> list[str]:
    """Where the model looks on the gallery's images: Grad-CAM heat over each, or why there is none."""
    gallery = evaluation.gallery
    if not gallery.images:
        return []
    if gallery.saliency_note:
        return ["## Saliency", f"No saliency maps: {gallery.saliency_note}."]
    parts = [
        "## Saliency",
        f"Grad-CAM on `{gallery.saliency_layer}` for the class the model predicts, over the "
        "Errors section's images: red where the evidence for its answer lies, blue where none does.",
    ]
    parts += [
        f"**{KIND_TITLES[kind].capitalize()}:**\n\n![Grad-CAM, {KIND_TITLES[kind]}]({picture(Path(sheet).name)})"
        for kind, sheet in gallery.saliency.items()
    ]
    return parts


def _deployment(q: QuantizationReport | None) -> list[str]:
    if q is None:
        return []
    rows = [
        [
            m.format,
            f"{m.score:.4f}",
            f"{m.agreement:.4f}",
            f"{m.size_mb:.2f}",
            f"{m.latency_ms_b1:.2f}",
            f"{m.latency_ms_b32:.2f}",
        ]
        for m in (q.fp32, q.int8)
        if m is not None
    ]
    return [
        "## Deployment artifact",
        f"Ships **{q.shipped}** ({q.reason}). ONNX fp32 matches torch to {q.parity_max_abs_diff:.1e} in the "
        f"{'logits' if q.torch_map is None else 'scores of the boxes both find'}; int8 is calibrated "
        f"({q.calibration_method}) on {len(q.calibration_ids)} seeded train images. "
        f"Measured on the test split with {q.threads} thread(s), each latency the lowest of interleaved rounds:",
        _table(["artifact", q.fp32.metric, "agreement with torch", "size MB", "batch 1 ms", "batch 32 ms"], rows),
    ]


def _distillation(card: ModelCard) -> list[str]:
    """A student beside its teacher: what distillation kept of the accuracy, and what it saved."""
    teacher = card.teacher
    if teacher is None:
        return []
    models = [(teacher.evaluation, teacher.quantization), (card.evaluation, card.quantization)]
    rows = [
        ["test accuracy", *(f"{e.metrics['accuracy']:.4f}" for e, _ in models)],
        ["ships", *(q.shipped if q else "not exported" for _, q in models)],
    ]
    for name, field in (("size MB", "size_mb"), ("batch 1 ms", "latency_ms_b1"), ("batch 32 ms", "latency_ms_b32")):
        rows.append([name, *(f"{getattr(q.shipped_artifact, field):.2f}" if q else "" for _, q in models)])
    header = f"this version ({card.trained.architecture})"
    return [
        "## Distillation",
        f"Distilled from version {teacher.version} (`{teacher.architecture}`): trained on its softened answers and "
        "the true labels (`distill.*` in the lineage's parameters). Both measured on the same test split, by the "
        "run that trained them, as shipped:",
        _table(["", f"teacher v{teacher.version} ({teacher.architecture})", header], rows),
    ]


def _comparison(comparison: ChampionComparison | None) -> list[str]:
    parts = ["## Comparison with the champion"]
    if comparison is None:
        return [*parts, "There was no champion when this version was evaluated."]
    if comparison.comparable and comparison.map_difference is not None:
        rows = [["mAP@[.5:.95]", f"{comparison.candidate_map:.4f}", f"{comparison.champion_map:.4f}"]]
        parts.append(_table(["", "this version", f"champion v{comparison.champion_version}"], rows))
    elif comparison.comparable:
        rows = [
            ["accuracy", f"{comparison.candidate_accuracy:.4f}", f"{comparison.champion_accuracy:.4f}"],
            ["macro-F1", f"{comparison.candidate_macro_f1:.4f}", f"{comparison.champion_macro_f1:.4f}"],
            [
                "right where the other is wrong",
                str(comparison.only_candidate_correct),
                str(comparison.only_champion_correct),
            ],
        ]
        parts.append(_table(["", "this version", f"champion v{comparison.champion_version}"], rows))
    return [*parts, comparison.describe()]


def render_markdown(card: ModelCard, picture: Source = str) -> str:
    """The card as Markdown; `picture` turns a picture's file name into what the page links (the name itself
    beside the pictures' files, or a data URI in the self-contained HTML)."""
    trained, dataset = card.trained, card.dataset
    classes = ", ".join(f"`{c}`" for c in dataset.class_names)
    detector = card.evaluation.task == "detection"
    kind = "object detector (FCOS)" if detector else "image classifier"
    does = (
        f"Finds and boxes {classes} in images like those of the `{card.data_source}` dataset"
        if detector
        else f"Sorts images like those of the `{card.data_source}` dataset into {classes}"
    )
    parts = [
        f"# Model card: {card.model_name} version {card.version}",
        f"`{trained.architecture}` {kind}, {dataset.image_size}x{dataset.image_size} px input, "
        f"gate **{'passed' if card.decision.passed else 'FAILED'}**.",
        "## Intended use",
        f"{does}, as decision support: a "
        "person reviews low-confidence or high-stakes predictions. Not for images from another domain, and not "
        "as the sole basis of a decision about people.",
        *_data_and_metrics(card, picture),
        *_slices_and_behaviour(card.evaluation),
        *_errors(card.evaluation, picture),
        *_saliency(card.evaluation, picture),
        *_deployment(card.quantization),
        *_distillation(card),
        "## Gate",
        "```",
        card.decision.table(),
        "```",
        *_comparison(card.evaluation.champion),
        "## Known limitations",
        "\n".join(f"- {note}" for note in limitations(card)),
        "## Lineage",
        _table(["tag", "value"], [[k, f"`{card.lineage.get(k, '')}`"] for k in LINEAGE_KEYS]),
        f"MLflow run `{trained.run_id}`, model `{trained.model_uri}`.",
    ]
    return "\n\n".join(parts) + "\n"


def write_model_card(card: ModelCard, out_dir: Path) -> tuple[Path, Path]:
    """model_card.md beside copies of its pictures, and a self-contained model_card.html (pictures inlined)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in pictures(card.evaluation).items():
        (out_dir / name).write_bytes(path.read_bytes())
    markdown = out_dir / "model_card.md"
    markdown.write_text(render_markdown(card), encoding="utf-8")

    def inline(name: str) -> str:
        return f"data:image/png;base64,{base64.b64encode((out_dir / name).read_bytes()).decode()}"

    body = MarkdownIt("commonmark").enable("table").render(render_markdown(card, inline))
    html = out_dir / "model_card.html"
    html.write_text(
        encoding="utf-8",
        data="<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(card.model_name)} v{card.version}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .6rem}"
        "th{background:#f3f3f3}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}img{max-width:32rem}"
        f"</style></head><body>{body}</body></html>\n",
    )
    return markdown, html
