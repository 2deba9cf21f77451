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

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvops.config import Params, TrainParams
from cvops.data.augment import ImageDataset, eval_transform, train_transform
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
    progress: bool = True,
) -> dict[str, float]:
    """One pass over `loader`; trains when an optimizer is given, else evaluates without gradients."""
    training = optimizer is not None
    model.train(training)  # evaluation: BatchNorm running stats, no dropout
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    with torch.set_grad_enabled(training):
        for images, labels in tqdm(loader, desc=desc, leave=False, unit="batch", disable=None if progress else True):
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


def _set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    for p in backbone_parameters(model):
        p.requires_grad_(trainable)


def _latest_checkpoint(directory: Path) -> Path | None:
    checkpoints = sorted(directory.glob("epoch_*.pt"))
    return checkpoints[-1] if checkpoints else None


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary name and rename, so a crash never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.partial")
    torch.save(state, partial)
    os.replace(partial, path)


def train_model(
    model: nn.Module,
    train_set: ImageDataset,
    val_set: ImageDataset,
    params: TrainParams,
    *,
    seed: int,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    run_key: str = "",
    on_epoch: MetricsCallback | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune `model`; returns it with the weights of its best validation epoch.

    With `checkpoint_dir`, every epoch is saved there; `resume` continues from the newest
    checkpoint, which must carry the same `run_key` (params and data) as this run.
    """
    seed_everything(seed)
    torch.set_flush_denormal(True)  # denormal floats slow CPU kernels many times over late in training
    model.to(device).to(memory_format=torch.channels_last)  # NHWC: faster convolutions on CPU (oneDNN) and GPU
    generator = torch.Generator().manual_seed(seed)
    persistent = params.num_workers > 0
    train_loader = DataLoader(
        train_set, batch_size=params.batch_size, shuffle=True, drop_last=len(train_set) > params.batch_size,
        generator=generator, pin_memory=device.type == "cuda", num_workers=params.num_workers,
        persistent_workers=persistent,
    )  # fmt: skip
    val_loader = DataLoader(
        val_set, batch_size=params.batch_size * 2, num_workers=params.num_workers, persistent_workers=persistent
    )
    optimizer = torch.optim.AdamW(
        [
            {"params": backbone_parameters(model), "lr": params.lr},
            {"params": head_parameters(model), "lr": params.lr * params.head_lr_multiplier},
        ],
        weight_decay=params.weight_decay,
    )
    steps_per_epoch = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(params.warmup_epochs * steps_per_epoch, params.epochs * steps_per_epoch)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)
    result = TrainResult(model=model)
    best_loss, best_state, stale, first_epoch = math.inf, copy.deepcopy(model.state_dict()), 0, 1

    if resume:
        latest = _latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
        if latest is None:
            raise ModelError(f"--resume: no checkpoint in {checkpoint_dir}; run without --resume to start afresh")
        state = torch.load(latest, map_location=device, weights_only=False)
        if state["run_key"] != run_key:
            raise ModelError(f"--resume: {latest} was made with other params or data; run without --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        best_loss, best_state, stale = state["best_loss"], state["best_state"], state["stale"]
        result.history, result.best_epoch = state["history"], state["best_epoch"]
        first_epoch = state["epoch"] + 1
        log.info("resuming from %s (epoch %d done)", latest, state["epoch"])

    epochs = tqdm(range(first_epoch, params.epochs + 1), desc="train", unit="epoch", disable=None if progress else True)
    for epoch in epochs:
        if stale >= params.early_stopping_patience:
            result.stopped_early = True
            break
        _set_backbone_trainable(model, epoch > params.freeze_backbone_epochs)
        train_set.transform.set_random_seed(seed + epoch)  # so a resumed epoch augments as the original would
        train = run_epoch(model, train_loader, criterion, device, optimizer, scheduler, f"epoch {epoch}", progress)
        val = run_epoch(model, val_loader, criterion, device, desc="val", progress=progress)
        metrics = {
            "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "val_loss": val["loss"], "val_accuracy": val["accuracy"],
            "train_images": train["images"], "train_seconds": train["seconds"],
            "lr": optimizer.param_groups[0]["lr"],
        }  # fmt: skip
        result.history.append(metrics)
        if val["loss"] < best_loss:
            best_loss, best_state, stale, result.best_epoch = val["loss"], copy.deepcopy(model.state_dict()), 0, epoch
        else:
            stale += 1
        epochs.set_postfix(val_acc=f"{val['accuracy']:.3f}", val_loss=f"{val['loss']:.3f}")
        log.info(
            "epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.0f img/s",
            epoch, params.epochs, train["loss"], train["accuracy"], val["loss"], val["accuracy"],
            train["images"] / train["seconds"],
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(metrics, epoch)
        if checkpoint_dir is not None:
            _save_checkpoint(
                checkpoint_dir / f"epoch_{epoch:03d}.pt",
                {"epoch": epoch, "run_key": run_key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "best_loss": best_loss, "best_state": best_state,
                 "stale": stale, "history": result.history, "best_epoch": result.best_epoch},
            )  # fmt: skip
    _set_backbone_trainable(model, True)
    model.load_state_dict(best_state)
    model.eval()
    return result


def fit(
    ref: DatasetRef,
    params: Params,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_epoch: MetricsCallback | None = None,
    progress: bool = True,
) -> TrainResult:
    """Build the configured model and train it on a prepared dataset's train/val splits."""
    seed_everything(params.base.seed)  # the head's (and a from-scratch model's) initial weights
    model = create_model(params.train.model, ref.num_classes, params.train.pretrained)
    mean, std = normalization(model)
    train_images, train_labels, _ = load_split(ref, "train")
    val_images, val_labels, _ = load_split(ref, "val")
    return train_model(
        model,
        ImageDataset(train_images, train_labels, train_transform(params.train.augment, mean, std, params.base.seed)),
        ImageDataset(val_images, val_labels, eval_transform(mean, std)),
        params.train,
        seed=params.base.seed,
        device=resolve_device(params.base.device),
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        run_key=f"{params.hash()}-{ref.data_version}",
        on_epoch=on_epoch,
        progress=progress,
    )
