"""Model cards: one Markdown and one self-contained HTML page per registered version."""

import base64
from collections.abc import Callable
from html import escape
from pathlib import Path

from markdown_it import MarkdownIt
from pydantic import BaseModel

from cvops.data.audit import DataAudit
from cvops.data.prepare import DatasetRef
from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import KIND_TITLES, ChampionComparison, Evaluation, QuantizationReport
from cvops.registry.lineage import LINEAGE_KEYS
from cvops.registry.tracking import TrainedModel
from cvops.tasks import task

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
    audit: DataAudit | None = None  # the data audit of its run


def _cell(text: str) -> str:
    """A table cell: a class name may hold `|`, which would split the cell."""
    return str(text).replace("|", "\\|")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; the tasks' report parts write their metrics sections with it too."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def limitations(card: ModelCard) -> list[str]:
    """What a reviewer should know before trusting the model, derived from its own evidence."""
    evaluation, gate = card.evaluation, card.decision
    notes = [
        f"Trained and tested only on the `{card.data_source}` data ({card.evaluation.num_images} test images); "
        "images from other sources, cameras or preprocessing are outside its tested range.",
        *task(evaluation.task).report.quality_notes(evaluation),
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
        table(
            ["class", *dataset.counts],
            [[c, *(str(dataset.counts[s].get(c, 0)) for s in dataset.counts)] for c in dataset.class_names],
        ),
        *_growth(card),
    ]


def _audit(audit: DataAudit | None) -> list[str]:
    """What the data audit found in the data the model was trained and tested on."""
    if audit is None:
        return []
    if not audit.enabled:
        return ["## Data health", "Not audited (audit.enabled false)."]
    counts = [
        ["likely label errors", str(len(audit.label_issues)), audit.note or f"of {audit.labels_ranked} judged"],
        ["near-duplicate pairs within a split", str(len(audit.duplicates)), ""],
        ["near-duplicate pairs with different labels (any splits)", str(sum(p.conflicting for p in audit.pairs)), ""],
        ["test images with a near-copy in train", str(len(audit.leaked("test"))), ", ".join(audit.leaked("test")[:5])],
        ["val images with a near-copy in train", str(len(audit.leaked("val"))), ", ".join(audit.leaked("val")[:5])],
        ["outliers", str(len(audit.outliers)), ", ".join(o.path for o in audit.outliers[:3])],
    ]
    parts = ["## Data health", "The data audit before training (the run's `audit/audit.html` shows every finding):"]
    parts.append(table(["finding", "count", "examples"], counts))
    if audit.label_issues:
        parts.append("Likeliest label errors (the given label's probability from a fit that did not see the image):")
        rows = [
            [f"`{i.path}`", i.split, i.label or "", i.suspected, f"{i.quality:.3f}"] for i in audit.label_issues[:5]
        ]
        parts.append(table(["image", "split", "label", "suspected", "probability"], rows))
    return parts


def pictures(evaluation: Evaluation) -> dict[str, Path]:
    """Every picture the card shows, by the file name the card gives it: the confusion matrix (a detector's
    example images), the gallery's sheets and their Grad-CAM overlays."""
    named = {evaluation.confusion_matrix_png: "confusion_matrix.png", evaluation.examples_png: "examples.png"}
    return {named.get(path, Path(path).name): Path(path) for path in evaluation.pictures()}


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
        table(["data version", "source", *classes, "total"], rows),
    ]


def _slices_and_behaviour(evaluation: Evaluation) -> list[str]:
    names = list(evaluation.slices[0].scores) if evaluation.slices else []
    slices = [[s.attribute, s.value, str(s.n), *(f"{v:.4f}" for v in s.scores.values())] for s in evaluation.slices]
    counted = task(evaluation.task).report.SLICE_COUNTS
    parts = [
        "## Slices",
        table(["attribute", "value", counted, *names], slices)
        if slices
        else "No slices (no metadata columns and brightness slicing off).",
    ]
    if evaluation.invariance:
        parts += [
            "## Behaviour",
            table(["transform", "same prediction"], [[t, f"{v:.1%}"] for t, v in evaluation.invariance.items()]),
        ]
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
        for m in q.candidates()
    ]
    return [
        "## Deployment artifact",
        f"Ships **{q.shipped}** ({q.reason}). ONNX fp32 matches torch to {q.parity_max_abs_diff:.1e} in the "
        f"{'logits' if q.torch_map is None else 'scores of the boxes both find'}; int8 is calibrated "
        f"({q.calibration_method}) on {len(q.calibration_ids)} seeded train images. "
        f"{_pruned(q)}Measured on the test split with {q.threads} thread(s), each latency the median of calls "
        "taking turns with the other files':",
        table(["artifact", q.fp32.metric, "agreement with torch", "size MB", "batch 1 ms", "batch 32 ms"], rows),
        *_targets(q),
    ]


def _targets(q: QuantizationReport) -> list[str]:
    """The export targets (export.targets), each as measured here, or why it was not run."""
    if not q.targets:
        return []

    def number(value: float | None, digits: int) -> str:
        return "not run here" if value is None else f"{value:.{digits}f}"

    rows = [
        [
            t.target,
            t.runtime,
            t.source,
            f"{t.size_mb:.2f}",
            number(t.score, 4),
            number(t.agreement, 4),
            number(t.latency_ms_b1, 2),
            number(t.latency_ms_b32, 2),
        ]
        for t in q.targets
    ]
    notes = [f"{t.target}: {t.note}." for t in q.targets if t.note]
    return [
        "### Export targets",
        "The shipped model for each runtime of `export.targets`, checked on the test split and timed in turns "
        "with the shipped ONNX file:",
        table(["target", "runtime", "from", "size MB", q.fp32.metric, "agreement", "batch 1 ms", "batch 32 ms"], rows),
        *notes,
    ]


def _pruned(q: QuantizationReport) -> str:
    """What pruning removed, when it ran (prune.enabled)."""
    p = q.pruning
    if p is None:
        return ""
    return (
        f"The pruned files are the model with {p.ratio:.0%} of each prunable layer's channels removed "
        f"({p.parameters_before:,} parameters to {p.parameters_after:,}, {p.macs_before:,} multiply-accumulates "
        f"an image to {p.macs_after:,}) and fine-tuned for {p.fine_tune_epochs} epoch(s); their agreement is "
        "with the model before pruning. "
    )


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
        table(["", f"teacher v{teacher.version} ({teacher.architecture})", header], rows),
    ]


def _comparison(comparison: ChampionComparison | None) -> list[str]:
    parts = ["## Comparison with the champion"]
    if comparison is None:
        return [*parts, "There was no champion when this version was evaluated."]
    if comparison.comparable and comparison.map_difference is not None:
        rows = [["mAP@[.5:.95]", f"{comparison.candidate_map:.4f}", f"{comparison.champion_map:.4f}"]]
        parts.append(table(["", "this version", f"champion v{comparison.champion_version}"], rows))
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
        parts.append(table(["", "this version", f"champion v{comparison.champion_version}"], rows))
    return [*parts, comparison.describe()]


def render_markdown(card: ModelCard, picture: Source = str) -> str:
    """The card as Markdown; `picture` turns a picture's file name into what the page links (the name itself
    beside the pictures' files, or a data URI in the self-contained HTML)."""
    trained, dataset = card.trained, card.dataset
    report = task(card.evaluation.task).report
    kind, does = report.purpose(", ".join(f"`{c}`" for c in dataset.class_names), card.data_source)
    parts = [
        f"# Model card: {card.model_name} version {card.version}",
        f"`{trained.architecture}` {kind}, {dataset.image_size}x{dataset.image_size} px input "
        f"(images that are not square: {dataset.resize}), "
        f"gate **{'passed' if card.decision.passed else 'FAILED'}**.",
        "## Intended use",
        f"{does}, as decision support: a "
        "person reviews low-confidence or high-stakes predictions. Not for images from another domain, and not "
        "as the sole basis of a decision about people.",
        *_data(card),
        *_audit(card.audit),
        *report.card_metrics(card, picture),
        *_slices_and_behaviour(card.evaluation),
        *report.card_errors(card.evaluation, picture),
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
        table(["tag", "value"], [[k, f"`{card.lineage.get(k, '')}`"] for k in LINEAGE_KEYS]),
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
