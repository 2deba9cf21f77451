"""Test-split evaluation: predictions, headline, per-class and calibration metrics with intervals, confusion matrix."""

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn
from torch.utils.data import DataLoader

from cvops.data.augment import ImageDataset, eval_transform
from cvops.data.prepare import DatasetRef, load_split
from cvops.models import normalization
from cvops.statistics import bootstrap_interval, expected_calibration_error


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


class Evaluation(BaseModel):
    """Test-split results of one model."""

    metrics: dict[str, float]
    confusion_matrix_png: str
    num_images: int


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def evaluate(model: nn.Module, ref: DatasetRef, out_dir: Path, device: torch.device, seed: int) -> Evaluation:
    """Metrics (with calibration and seeded 95% bootstrap intervals) and confusion matrix on the test split."""
    images, labels, _ = load_split(ref, "test")
    mean, std = normalization(model)
    proba = predict_proba(model, ImageDataset(images, labels, eval_transform(mean, std)), device)
    predicted = proba.argmax(axis=1)
    png = plot_confusion_matrix(labels, predicted, ref.class_names, out_dir / "confusion_matrix.png")
    metrics = classification_metrics(labels, predicted, ref.class_names)
    metrics["ece"] = expected_calibration_error(proba, labels)
    for name, metric in (("accuracy", accuracy_score), ("macro_f1", macro_f1)):
        metrics[f"{name}_ci95_low"], metrics[f"{name}_ci95_high"] = bootstrap_interval(
            labels, predicted, metric, seed=seed
        )
    return Evaluation(
        metrics=metrics,
        confusion_matrix_png=str(png),
        num_images=len(labels),
    )
