"""Test-split evidence: metrics with intervals, calibration, confusion matrix, slices, behavioural checks,
footprint, the paired comparison with the champion and the error gallery."""

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn
from torch.utils.data import DataLoader

from cvops.config import DetectParams, EvaluateParams, MeasureParams, VideoParams
from cvops.data.augment import ImageDataset
from cvops.data.prepare import DatasetRef, load_split, resized_images
from cvops.data.preprocess import LEGACY_DECODER, LEGACY_RESIZE, Decoder, Resize, resize_image
from cvops.data.production import PRODUCTION, RECENT, is_production
from cvops.evaluation.gallery import build_gallery
from cvops.evaluation.reports import TORCH, ChampionComparison, Evaluation, Footprint, SliceMetrics
from cvops.evaluation.saliency import with_saliency
from cvops.evaluation.statistics import (
    accuracy,
    bootstrap_interval,
    expected_calibration_error,
    macro_f1,
    mcnemar_exact,
    paired_bootstrap_difference,
)
from cvops.registry.model_registry import CHAMPION, ModelRegistry
from cvops.registry.tracking import load_trained_model
from cvops.timing import interleaved_calls, latency, torch_threads
from cvops.training.models import normalization


@torch.no_grad()
def predict_proba(model: nn.Module, dataset: ImageDataset, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, C) for every image of `dataset`, in order."""
    model.eval().to(device)
    chunks = [
        torch.softmax(model(images.to(device)), dim=1).cpu().numpy()
        for images, _ in DataLoader(dataset, batch_size=batch_size)
    ]
    return np.concatenate(chunks)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision/recall/F1, flat so they log straight to MLflow."""
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }
    for i, name in enumerate(class_names):
        metrics[f"precision_{name}"] = float(precision[i])
        metrics[f"recall_{name}"] = float(recall[i])
        metrics[f"f1_{name}"] = float(f1[i])
        metrics[f"support_{name}"] = float(support[i])
    return metrics


def plot_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], path: Path) -> Path:
    """Counts and row-normalised rates in one PNG, readable for 2 to ~20 classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(class_names))))
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.6 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    ticks = range(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title="Confusion matrix (test split)")
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class Champion(BaseModel):
    """The model currently serving, loaded for a paired comparison."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    version: str
    model: nn.Module
    class_names: list[str]
    image_size: int
    resize: Resize = LEGACY_RESIZE
    decoder: Decoder = LEGACY_DECODER
    data_version: str = ""


def load_champion(registry: ModelRegistry) -> Champion | None:
    """The champion's model and what it was trained on, for the paired comparison; None without one."""
    info = registry.alias(CHAMPION)
    if info is None:
        return None
    trained = registry.trained_model(info)
    return Champion(
        version=info.version,
        model=load_trained_model(trained),
        class_names=trained.class_names,
        image_size=trained.image_size,
        resize=trained.resize,
        decoder=trained.decoder,
        data_version=info.tags.get("data_version", ""),
    )


def brightness(images: np.ndarray) -> np.ndarray:
    """Mean luminance (0-255) of each image of an (N, H, W, 3) uint8 batch."""
    return (images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean(axis=(1, 2))


def slice_metrics(
    labels: np.ndarray,
    predicted: np.ndarray,
    manifest: pd.DataFrame,
    images: np.ndarray,
    slice_by: list[str],
    brightness_slices: int,
) -> list[SliceMetrics]:
    """Accuracy and macro-F1 per value of each metadata column in `slice_by` present in the manifest, on the
    labelled production images (`recent`), and per brightness quantile of the images (tertiles: dark / mid /
    bright)."""
    attributes = {
        column: manifest[column].fillna("unknown").astype(str).to_numpy()
        for column in slice_by
        if column in manifest.columns
    }
    if (recent := is_production(manifest)).any():  # the `recent` slice: labelled production images
        attributes[RECENT] = np.where(recent, PRODUCTION, "")
    if brightness_slices >= 2:
        level = brightness(images)
        edges = np.quantile(level, np.linspace(0, 1, brightness_slices + 1)[1:-1])
        names = ["dark", "mid", "bright"] if brightness_slices == 3 else [f"q{i + 1}" for i in range(brightness_slices)]
        attributes["brightness"] = np.array(names)[np.searchsorted(edges, level, side="right")]
    slices = []
    for attribute, values in attributes.items():
        for value in sorted(set(values) - {""}):
            members = values == value
            y_true, y_pred = labels[members], predicted[members]
            slices.append(
                SliceMetrics(
                    attribute=attribute,
                    value=str(value),
                    n=int(members.sum()),
                    accuracy=float(accuracy_score(y_true, y_pred)),
                    macro_f1=macro_f1(y_true, y_pred),
                )
            )
    return slices


INVARIANCE_TRANSFORMS = {
    "hflip": lambda images: images[:, :, ::-1],
    "vflip": lambda images: images[:, ::-1],
    "rotate90": lambda images: np.rot90(images, k=1, axes=(1, 2)),
}


def invariance(
    model: nn.Module, images: np.ndarray, predicted: np.ndarray, transforms: tuple[str, ...], device: torch.device
) -> dict[str, float]:
    """Share of images whose predicted class stays the same under each transform (a behavioural test)."""
    mean, std = normalization(model)
    shares = {}
    for name in transforms:
        moved = np.ascontiguousarray(INVARIANCE_TRANSFORMS[name](images))
        dataset = ImageDataset(moved, np.zeros(len(moved), dtype=np.int64), mean, std)
        shares[name] = float(np.mean(predict_proba(model, dataset, device).argmax(axis=1) == predicted))
    return shares


def footprint(model: nn.Module, image_size: int, device: torch.device, measure: MeasureParams) -> Footprint:
    """Serialized size of the weights and the batch-1 latency (cvops/timing.py)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    model.eval().to(device)
    batch = torch.rand(1, 3, image_size, image_size, device=device)
    with torch.no_grad(), torch_threads(measure.threads):
        measured = latency(interleaved_calls({TORCH: lambda: model(batch)}, measure.runs)[TORCH])
    return Footprint(
        format=TORCH,
        size_mb=buffer.getbuffer().nbytes / 2**20,
        latency_ms=measured.median,
        latency_ms_high=measured.high,
        threads=measure.threads,
    )


def champion_inputs(
    champion: Champion, ref: DatasetRef, images: np.ndarray, rows: pd.DataFrame
) -> tuple[np.ndarray, str] | ChampionComparison:
    """The test images (`rows` of the manifest) as the champion takes them (resized to its input size, by its
    resize rule) and what a reviewer should know of the pairing; an unpaired comparison when the champion
    answers with other classes."""
    if champion.class_names != ref.class_names:
        return ChampionComparison(
            champion_version=champion.version,
            comparable=False,
            note=f"the champion predicts other classes ({', '.join(champion.class_names)}); no paired comparison",
        )
    note = ""
    if (champion.resize, champion.decoder) != (ref.resize, ref.decoder):  # as the champion's service would see them
        images = resized_images(rows["path"], ref.raw_dir, champion.image_size, champion.resize, champion.decoder)
        note = (
            f"test images from the originals by the champion's rule ({champion.resize}, {champion.decoder} decoder). "
        )
    elif champion.image_size != ref.image_size:  # square to square: every rule resizes alike
        images = np.stack([resize_image(Image.fromarray(image), champion.image_size) for image in images])
        note = f"test images resized from {ref.image_size} to the champion's {champion.image_size}px. "
    if champion.data_version and champion.data_version != ref.data_version:
        note += "The champion was trained on another data version: its training images may include test images."
    return images, note


@dataclass(frozen=True)
class CandidateAnswers:
    """The test split (images, labels, manifest) with the candidate's predicted classes: what the champion's
    answers are paired with."""

    images: np.ndarray
    labels: np.ndarray
    manifest: pd.DataFrame
    predicted: np.ndarray


def compare_with_champion(
    champion: Champion,
    ref: DatasetRef,
    candidate: CandidateAnswers,
    device: torch.device,
    *,
    seed: int,
    resamples: int,
) -> tuple[ChampionComparison, np.ndarray | None]:
    """Score the champion on the same test images and test the paired difference (McNemar, bootstrap); the
    comparison, and the champion's class probabilities (None when it answers with other classes)."""
    labels, predicted, manifest = candidate.labels, candidate.predicted, candidate.manifest
    paired = champion_inputs(champion, ref, candidate.images, manifest)
    if isinstance(paired, ChampionComparison):
        return paired, None
    images, note = paired
    mean, std = normalization(champion.model)
    proba = predict_proba(champion.model, ImageDataset(images, labels, mean, std), device)
    theirs = proba.argmax(axis=1)
    recent = {}
    if (in_recent := is_production(manifest)).any():  # production images: the loop's own evidence
        recent = {
            "recent_n": int(in_recent.sum()),
            "candidate_recent_accuracy": float(np.mean(predicted[in_recent] == labels[in_recent])),
            "champion_recent_accuracy": float(np.mean(theirs[in_recent] == labels[in_recent])),
        }
    p_value, only_candidate, only_champion = mcnemar_exact(predicted == labels, theirs == labels)
    difference, low, high = paired_bootstrap_difference(predicted == labels, theirs == labels, seed, resamples)
    comparison = ChampionComparison(
        champion_version=champion.version,
        comparable=True,
        note=note.strip(),
        n=len(labels),
        candidate_accuracy=float(np.mean(predicted == labels)),
        champion_accuracy=float(np.mean(theirs == labels)),
        accuracy_difference=difference,
        difference_ci95_low=low,
        difference_ci95_high=high,
        candidate_macro_f1=macro_f1(labels, predicted),
        champion_macro_f1=macro_f1(labels, theirs),
        mcnemar_p_value=p_value,
        only_candidate_correct=only_candidate,
        only_champion_correct=only_champion,
        **recent,
    )
    return comparison, proba


@dataclass(frozen=True)
class EvaluationSetup:
    """How a test-split evaluation runs, any task's: where it writes its pictures, on which device, with which
    seed (bootstrap intervals) and `evaluate` and `measure` params; and what only some tasks use: the
    transforms a classifier's prediction must survive (`invariance`), and a detector's served post-processing
    (`detect`: its drawn examples show the boxes scoring `detect.score_threshold`) and tracking (`video`, for
    `evaluate.tracking`)."""

    out_dir: Path
    device: torch.device
    seed: int
    params: EvaluateParams
    measure: MeasureParams
    invariance_checks: tuple[str, ...] = ()
    detect: DetectParams = field(default_factory=DetectParams)
    video: VideoParams = field(default_factory=VideoParams)


def evaluate(model: nn.Module, ref: DatasetRef, setup: EvaluationSetup, champion: Champion | None = None) -> Evaluation:
    """Every piece of a classifier's test-split evidence: metrics with calibration and seeded 95% bootstrap
    intervals, confusion matrix, slices, behavioural invariance, size and latency, and the paired champion
    comparison (a detector's: `cvops.tasks.detection.evaluation.evaluate_detector`)."""
    out_dir, device, seed, params, measure = setup.out_dir, setup.device, setup.seed, setup.params, setup.measure
    images, labels, manifest = load_split(ref, "test")
    mean, std = normalization(model)
    proba = predict_proba(model, ImageDataset(images, labels, mean, std), device)
    predicted = proba.argmax(axis=1)
    comparison, champion_proba = None, None
    if champion is not None:
        candidate = CandidateAnswers(images, labels, manifest, predicted)
        comparison, champion_proba = compare_with_champion(
            champion, ref, candidate, device, seed=seed, resamples=params.bootstrap_resamples
        )
    png = plot_confusion_matrix(labels, predicted, ref.class_names, out_dir / "confusion_matrix.png")
    gallery = build_gallery(
        images, labels, proba, manifest, ref.class_names, params.gallery_per_class, out_dir, champion_proba
    )
    gallery = with_saliency(gallery, model, images, mean, std, device, out_dir)
    metrics = classification_metrics(labels, predicted, ref.class_names)
    metrics["ece"] = expected_calibration_error(proba, labels)
    for name, metric in (("accuracy", accuracy), ("macro_f1", macro_f1)):
        metrics[f"{name}_ci95_low"], metrics[f"{name}_ci95_high"] = bootstrap_interval(
            labels, predicted, metric, seed=seed, resamples=params.bootstrap_resamples
        )
    return Evaluation(
        metrics=metrics,
        class_names=ref.class_names,
        confusion_matrix_png=str(png),
        num_images=len(labels),
        slices=slice_metrics(labels, predicted, manifest, images, params.slice_by, params.brightness_slices),
        invariance=invariance(model, images, predicted, setup.invariance_checks, device),
        footprint=footprint(model, ref.image_size, device, measure),
        champion=comparison,
        gallery=gallery,
    )
