"""The training loop: AdamW with a warm-up + cosine schedule, head-first fine-tuning,
early stopping on validation loss, and a resumable checkpoint per epoch."""

import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cvops.config import Params, TrainParams
from cvops.console import progress
from cvops.data.augment import ImageDataset, augmentation
from cvops.data.prepare import DatasetRef, load_split
from cvops.errors import ModelError
from cvops.models import backbone_parameters, create_model, head_parameters, normalization, resolve_device

log = logging.getLogger(__name__)
MetricsCallback = Callable[[dict[str, float], int], object]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def images_per_second(self) -> float:
        seen = sum(h["train_images"] for h in self.history)
        seconds = sum(h["train_seconds"] for h in self.history)
        return seen / seconds if seconds else 0.0


@dataclass
class Checkpoints:
    """Where a run keeps its per-epoch checkpoints; `run_key` (params and data) must match to resume."""

    directory: Path
    run_key: str

    def latest(self) -> dict[str, Any]:
        found = sorted(self.directory.glob("epoch_*.pt"))
        if not found:
            raise ModelError(f"--resume: no checkpoint in {self.directory}; run without --resume to start afresh")
        state = torch.load(found[-1], map_location="cpu", weights_only=False)
        if state["run_key"] != self.run_key:
            raise ModelError(f"--resume: {found[-1]} was made with other params or data; run without --resume")
        log.info("resuming from %s (epoch %d done)", found[-1], state["epoch"])
        return state

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Write to a temporary name and rename, so a crash never leaves a truncated checkpoint."""
        path = self.directory / f"epoch_{epoch:03d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".pt.partial")
        torch.save({**state, "epoch": epoch, "run_key": self.run_key}, partial)
        os.replace(partial, path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def run_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    desc: str = "",
) -> dict[str, float]:
    """One pass over `loader`; trains when an optimizer is given, else evaluates without gradients."""
    training = optimizer is not None
    model.train(training)  # evaluation: BatchNorm running stats, no dropout
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    with torch.set_grad_enabled(training):
        for images, labels in progress(loader, desc, unit="batch", leave=False):
            images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            logits = model(images)
            loss = criterion(logits, labels)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
    return {
        "loss": total_loss / seen,
        "accuracy": correct / seen,
        "images": seen,
        "seconds": time.perf_counter() - start,
    }


class _Loop:
    """The model with its data loaders, optimiser, schedule and loss: everything an epoch needs, and
    everything a checkpoint saves so that a resumed run continues as the original would have."""

    def __init__(
        self, model: nn.Module, train_set: ImageDataset, val_set: ImageDataset, params: TrainParams, seed: int,
        device: torch.device,
    ) -> None:  # fmt: skip
        self.model, self.train_set, self.params, self.seed, self.device = model, train_set, params, seed, device
        self.generator = torch.Generator().manual_seed(seed)
        persistent = params.num_workers > 0
        self.train_loader = DataLoader(
            train_set, batch_size=params.batch_size, shuffle=True, drop_last=len(train_set) > params.batch_size,
            generator=self.generator, pin_memory=device.type == "cuda", num_workers=params.num_workers,
            persistent_workers=persistent,
        )  # fmt: skip
        self.val_loader = DataLoader(
            val_set, batch_size=params.batch_size * 2, num_workers=params.num_workers, persistent_workers=persistent
        )
        self.optimizer = torch.optim.AdamW(
            [{"params": backbone_parameters(model), "lr": params.lr},
             {"params": head_parameters(model), "lr": params.lr * params.head_lr_multiplier}],
            weight_decay=params.weight_decay,
        )  # fmt: skip
        steps = len(self.train_loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(params.warmup_epochs * steps, params.epochs * steps)
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (backbone frozen for the first freeze_backbone_epochs), then validate."""
        for parameter in backbone_parameters(self.model):
            parameter.requires_grad_(epoch > self.params.freeze_backbone_epochs)
        if self.train_set.augment is not None:
            self.train_set.augment.set_random_seed(self.seed + epoch)  # a resumed epoch augments as the original
        train = run_epoch(self.model, self.train_loader, self.criterion, self.device, self.optimizer, self.scheduler,
                          f"epoch {epoch}")  # fmt: skip
        val = run_epoch(self.model, self.val_loader, self.criterion, self.device, desc="val")
        return {
            "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "val_loss": val["loss"], "val_accuracy": val["accuracy"],
            "train_images": train["images"], "train_seconds": train["seconds"],
            "lr": self.optimizer.param_groups[0]["lr"],
        }  # fmt: skip

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state()}  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


@dataclass
class _Best:
    """Early-stopping bookkeeping: the best validation loss so far, its weights and epoch, epochs since."""

    loss: float
    weights: dict[str, Any]
    epoch: int = 0
    stale: int = 0

    def update(self, epoch: int, val_loss: float, model: nn.Module) -> None:
        if val_loss < self.loss:
            self.loss, self.weights, self.epoch, self.stale = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            self.stale += 1


def train_model(
    model: nn.Module,
    train_set: ImageDataset,
    val_set: ImageDataset,
    params: TrainParams,
    *,
    seed: int,
    device: torch.device,
    checkpoints: Checkpoints | None = None,
    resume: bool = False,
    on_epoch: MetricsCallback | None = None,
) -> TrainResult:
    """Fine-tune `model`; returns it with the weights of its best validation epoch.

    With `checkpoints`, every epoch is saved; `resume` continues from the newest checkpoint.
    """
    seed_everything(seed)
    torch.set_flush_denormal(True)  # denormal floats slow CPU kernels many times over late in training
    model.to(device).to(memory_format=torch.channels_last)  # NHWC: faster convolutions on CPU (oneDNN) and GPU
    loop = _Loop(model, train_set, val_set, params, seed, device)
    result, best = TrainResult(model=model), _Best(loss=math.inf, weights=copy.deepcopy(model.state_dict()))
    first_epoch = 1
    if resume:
        if checkpoints is None:
            raise ModelError("--resume needs a checkpoint folder")
        state = checkpoints.latest()
        loop.restore(state)
        best, result.history, first_epoch = state["best"], state["history"], state["epoch"] + 1
    epochs = progress(range(first_epoch, params.epochs + 1), "train", unit="epoch")
    for epoch in epochs:
        if best.stale >= params.early_stopping_patience:
            result.stopped_early = True
            break
        metrics = loop.epoch(epoch)
        result.history.append(metrics)
        best.update(epoch, metrics["val_loss"], model)
        epochs.set_postfix(val_acc=f"{metrics['val_accuracy']:.3f}", val_loss=f"{metrics['val_loss']:.3f}")
        log.info(
            "epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.0f img/s", epoch, params.epochs,
            metrics["train_loss"], metrics["train_accuracy"], metrics["val_loss"], metrics["val_accuracy"],
            metrics["train_images"] / metrics["train_seconds"],
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(metrics, epoch)
        if checkpoints is not None:
            checkpoints.save(epoch, {**loop.state(), "best": best, "history": result.history})
    for parameter in backbone_parameters(model):
        parameter.requires_grad_(True)
    model.load_state_dict(best.weights)
    model.eval()
    result.best_epoch = best.epoch
    return result


def fit(
    ref: DatasetRef,
    params: Params,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_epoch: MetricsCallback | None = None,
) -> TrainResult:
    """Build the configured model and train it on a prepared dataset's train/val splits."""
    seed_everything(params.base.seed)  # the head's (and a from-scratch model's) initial weights
    model = create_model(params.train.model, ref.num_classes, params.train.pretrained)
    mean, std = normalization(model)
    train_images, train_labels, _ = load_split(ref, "train")
    val_images, val_labels, _ = load_split(ref, "val")
    augment = augmentation(params.train.augment, params.base.seed)
    return train_model(
        model,
        ImageDataset(train_images, train_labels, mean, std, augment),
        ImageDataset(val_images, val_labels, mean, std),
        params.train,
        seed=params.base.seed,
        device=resolve_device(params.base.device),
        checkpoints=Checkpoints(checkpoint_dir, f"{params.hash()}-{ref.data_version}") if checkpoint_dir else None,
        resume=resume,
        on_epoch=on_epoch,
    )
