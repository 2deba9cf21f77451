"""The evidence a model version carries, as data: what evaluation and quantization found.

Plain pydantic models with no torch, so the registry, the gate, the review commands and the service can
read evidence without loading a deep-learning framework.
"""

import hashlib
import re
from typing import Literal, get_args

from pydantic import BaseModel

from cvops.config import Task

Format = Literal["onnx-fp32", "onnx-int8", "onnx-pruned-fp32", "onnx-pruned-int8"]  # of an ONNX artifact
# the exported file, its int8-quantized copy, and the same two of the model with channels pruned (prune.*)
FP32, INT8, PRUNED, PRUNED_INT8 = get_args(Format)
TORCH = "torch"  # the trained model itself (its footprint, before export)
Kind = Literal["wrong", "unsure", "disagree"]  # of an error gallery's image
KIND_TITLES: dict[Kind, str] = {
    "wrong": "most confidently wrong",
    "unsure": "right with the least confidence",
    "disagree": "this version and the champion disagree",
}
_METRIC_CHARACTERS = re.compile(r"[^\w\-. /:]")  # what MLflow accepts in a metric name


def format_key(fmt: str) -> str:
    """How a format names its artifact in MLflow tags and metrics: onnx_fp32, onnx_int8, onnx_pruned_fp32, ..."""
    return fmt.replace("-", "_")


def metric_name(name: str) -> str:
    """`name` as an MLflow metric name: unchanged when MLflow accepts it, else its offending characters
    replaced and a short hash of the original appended, so two class names never share a metric."""
    safe = _METRIC_CHARACTERS.sub("_", name).replace("..", "__")
    if safe == name:
        return name
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


class SliceMetrics(BaseModel):
    """Metrics on the test images that share one value of one attribute (e.g. cell_type = mono); for
    detection, COCO mAP, and `n` counts true boxes for the object-size slices (COCO's small, medium, large)."""

    attribute: str
    value: str
    n: int
    accuracy: float | None = None
    macro_f1: float | None = None
    mean_ap: float | None = None

    @property
    def scores(self) -> dict[str, float]:
        """The slice's metrics by name (accuracy and macro-F1, or mAP)."""
        named = {"accuracy": self.accuracy, "macro-F1": self.macro_f1, "mAP": self.mean_ap}
        return {name: value for name, value in named.items() if value is not None}


class Footprint(BaseModel):
    """What a deployment pays for a model artifact: its size and its batch-1 latency here."""

    format: str
    size_mb: float
    latency_ms: float
    threads: int
    latency_ms_high: float | None = None  # 90th percentile of the calls (cvops/timing.py)

    def describe(self) -> str:
        spread = f", 90% of calls under {self.latency_ms_high:.3g} ms" if self.latency_ms_high is not None else ""
        return f"{self.format}, {self.threads} thread{'s' if self.threads > 1 else ''}{spread}"


class ChampionComparison(BaseModel):
    """The candidate against the current champion on the same test images (paired)."""

    champion_version: str
    comparable: bool
    note: str = ""
    n: int = 0
    candidate_accuracy: float | None = None
    champion_accuracy: float | None = None
    accuracy_difference: float | None = None
    difference_ci95_low: float | None = None
    difference_ci95_high: float | None = None
    candidate_macro_f1: float | None = None
    champion_macro_f1: float | None = None
    mcnemar_p_value: float | None = None
    only_candidate_correct: int = 0
    only_champion_correct: int = 0
    recent_n: int = 0  # test images from production (the `recent` slice), scored by both
    candidate_recent_accuracy: float | None = None
    champion_recent_accuracy: float | None = None
    candidate_map: float | None = None  # detection: COCO mAP@[.5:.95] of both, and the paired difference
    champion_map: float | None = None
    map_difference: float | None = None

    def describe(self) -> str:
        """One sentence for reviewers: the paired difference, its interval and the McNemar test."""
        if not self.comparable:
            return f"champion v{self.champion_version}: {self.note}"
        if self.map_difference is not None:
            return (
                f"mAP {self.candidate_map:.4f} vs champion v{self.champion_version} {self.champion_map:.4f}: "
                f"{self.map_difference:+.4f} (paired bootstrap 95% interval {self.difference_ci95_low:+.4f} to "
                f"{self.difference_ci95_high:+.4f}) on {self.n} images. {self.note}"
            ).strip()
        return (
            f"accuracy {self.candidate_accuracy:.4f} vs champion v{self.champion_version} "
            f"{self.champion_accuracy:.4f}: {self.accuracy_difference:+.4f} (paired 95% interval "
            f"{self.difference_ci95_low:+.4f} to {self.difference_ci95_high:+.4f}), exact McNemar "
            f"p = {self.mcnemar_p_value:.3g} on {self.n} images. {self.note}"
        ).strip()


class GalleryImage(BaseModel):
    """One test image of the gallery, with the model's answer (and the champion's, for a disagreement)."""

    kind: Kind
    index: int  # its row in the test split
    path: str  # its path in the dataset's manifest
    true: str
    predicted: str
    score: float  # the model's probability for `predicted`
    champion: str | None = None
    champion_score: float | None = None

    def caption(self) -> str:
        """The true label and the answers, with scores, one a line (what a sheet writes under the image)."""
        answers = f"this {self.predicted} {self.score:.2f}"
        if self.champion is not None:
            answers += f"\nchampion {self.champion} {self.champion_score:.2f}"
        return f"true {self.true}\n{answers}"


class Gallery(BaseModel):
    """The gallery's images and the sheets drawn of them (one per kind present), by kind."""

    per_class: int = 0  # at most this many images of each kind per true class (evaluate.gallery_per_class)
    images: list[GalleryImage] = []
    sheets: dict[Kind, str] = {}
    saliency: dict[Kind, str] = {}  # the same images with Grad-CAM heat drawn over them, by kind
    saliency_layer: str = ""  # the module whose feature map Grad-CAM used
    saliency_note: str = ""  # why there is no saliency (a model without a convolutional feature map)

    def of(self, kind: Kind) -> list[GalleryImage]:
        return [image for image in self.images if image.kind == kind]


class Evaluation(BaseModel):
    """Test-split evidence for one model: what the gate decides on and the model card shows.

    `metrics` names per-class values by the class names themselves (`recall_<class>`); `flat_metrics`
    gives the names MLflow accepts.
    """

    metrics: dict[str, float]
    class_names: list[str]
    confusion_matrix_png: str  # detection: "" (no confusion matrix), and examples_png shows boxes instead
    num_images: int
    task: Task = "classification"
    examples_png: str = ""
    slices: list[SliceMetrics] = []
    invariance: dict[str, float] = {}
    footprint: Footprint | None = None
    champion: ChampionComparison | None = None
    gallery: Gallery = Gallery()
    tracking_png: str = ""  # a detector with evaluate.tracking: annotated frames of its first tracking video
    tracking_data: str = ""  # ... and the version of those videos (tracking.data_version)

    def pictures(self) -> list[str]:
        """Every picture of the evidence: the confusion matrix (a detector's drawn examples and tracking strip), the
        error gallery's sheets and their Grad-CAM overlays."""
        found = (
            self.confusion_matrix_png,
            self.examples_png,
            self.tracking_png,
            *self.gallery.sheets.values(),
            *self.gallery.saliency.values(),
        )
        return [picture for picture in found if picture]

    def flat_metrics(self) -> dict[str, float]:
        """Every number, under names MLflow accepts, for the run's metrics."""
        flat = dict(self.metrics)
        for piece in self.slices:
            flat.update(
                {
                    f"slice_{piece.attribute}_{piece.value}_{name.lower().replace('-', '_')}": value
                    for name, value in piece.scores.items()
                    if name != "macro-F1"
                }
            )
        flat.update({f"invariance_{name}": share for name, share in self.invariance.items()})
        if self.footprint:
            flat.update(model_size_mb=self.footprint.size_mb, latency_ms=self.footprint.latency_ms)
        if self.champion and self.champion.comparable:
            flat.update(
                {
                    f"vs_champion_{k}": float(v)
                    for k, v in self.champion.model_dump().items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
            )
        return {metric_name(name): value for name, value in flat.items()}


class OnnxMeasurement(BaseModel):
    """One ONNX artifact measured on the test split, on this machine."""

    format: Format
    path: str
    sha256: str
    size_mb: float
    accuracy: float | None = None  # a classifier's test accuracy ...
    mean_ap: float | None = None  # ... or a detector's COCO mAP@[.5:.95]
    agreement: float  # with the torch model: top-1 agreement, or the share of its boxes found again (detection)
    latency_ms_b1: float  # median of calls interleaved with the other file's (cvops/timing.py)
    latency_ms_b32: float
    latency_ms_b1_high: float | None = None  # 90th percentile of the calls: the spread
    latency_ms_b32_high: float | None = None

    @property
    def metric(self) -> str:
        """The name of the artifact's quality score: accuracy or mAP."""
        return "accuracy" if self.accuracy is not None else "mAP"

    @property
    def score(self) -> float:
        """The artifact's quality score (`metric`)."""
        score = self.accuracy if self.accuracy is not None else self.mean_ap
        assert score is not None, "an OnnxMeasurement holds accuracy or mean_ap"
        return score


class Pruning(BaseModel):
    """What structured pruning (prune.*) removed, and how the pruned model was fine-tuned."""

    ratio: float  # prune.ratio: the share of each prunable layer's channels removed
    parameters_before: int
    parameters_after: int
    macs_before: int  # multiply-accumulates of one image, as torch-pruning counts them
    macs_after: int
    fine_tune_epochs: int  # run (early stopping may end them before prune.fine_tune_epochs)
    parity_max_abs_diff: float | None = None  # the pruned ONNX file against the pruned torch model, once exported


class TargetMeasurement(BaseModel):
    """The shipped model for one export target (cvops/export/targets.py), checked and measured on the test split
    here; a target that cannot run here (Core ML) has its spec checked instead, and no scores or latencies."""

    target: str  # export.targets: onnx | openvino | coreml
    runtime: str  # what ran it, with its version
    source: str  # what it was converted from: the shipped file's format, or the torch model
    path: str
    sha256: str  # over every file of the target (an IR's .xml and .bin; a .mlpackage's tree)
    size_mb: float
    accuracy: float | None = None
    mean_ap: float | None = None
    agreement: float | None = None  # with the torch model, as the ONNX files'
    latency_ms_b1: float | None = None  # timed in turns with the shipped ONNX file (cvops/timing.py)
    latency_ms_b32: float | None = None
    note: str = ""

    @property
    def score(self) -> float | None:
        return self.accuracy if self.accuracy is not None else self.mean_ap


class QuantizationReport(BaseModel):
    """Every artifact (fp32, int8; with prune.enabled, the pruned model's fp32 and int8), the evidence of the
    export, calibration and pruning, and which one ships (and why)."""

    fp32: OnnxMeasurement
    int8: OnnxMeasurement | None
    pruned: OnnxMeasurement | None = None
    pruned_int8: OnnxMeasurement | None = None
    pruning: Pruning | None = None
    torch_accuracy: float | None = None  # the torch model's score (accuracy, or mAP for a detector)
    torch_map: float | None = None
    parity_max_abs_diff: float
    calibration_method: str
    calibration_ids: list[str]
    threads: int
    shipped: Format
    reason: str
    speedup_b32_range: tuple[float, float] | None = None  # 10th-90th percentile of the paired fp32/int8 ratios
    paired_speedup_b32: float | None = None  # median of the paired ratios: what the rule compares
    pruned_speedups_b32: dict[Format, float] = {}  # each pruned artifact's, over fp32, the same way
    targets: list[TargetMeasurement] = []  # export.targets: the shipped model for other runtimes

    def candidates(self) -> list[OnnxMeasurement]:
        """Every artifact measured, in the order of `Format`."""
        return [m for m in (self.fp32, self.int8, self.pruned, self.pruned_int8) if m is not None]

    @property
    def shipped_artifact(self) -> OnnxMeasurement:
        return next(m for m in self.candidates() if m.format == self.shipped)

    def footprint(self) -> Footprint:
        shipped = self.shipped_artifact
        return Footprint(
            format=shipped.format,
            size_mb=shipped.size_mb,
            latency_ms=shipped.latency_ms_b1,
            latency_ms_high=shipped.latency_ms_b1_high,
            threads=self.threads,
        )

    def speedup_b32(self) -> float | None:
        if self.int8 is None:
            return None
        return self.paired_speedup_b32 or self.fp32.latency_ms_b32 / self.int8.latency_ms_b32

    def summary(self) -> str:
        lines = [f"{'artifact':<16} {self.fp32.metric:>8} {'agreement':>9} {'size MB':>8} {'b1 ms':>7} {'b32 ms':>8}"]
        for m in self.candidates():
            lines.append(
                f"{m.format:<16} {m.score:>8.4f} {m.agreement:>9.4f} {m.size_mb:>8.2f} "
                f"{m.latency_ms_b1:>7.2f} {m.latency_ms_b32:>8.2f}"
            )
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        lines.append(f"ships {self.shipped}: {self.reason} ({threads}; latency: median of interleaved calls)")
        return "\n".join(lines)
