"""The training loop: AdamW with a warm-up + cosine schedule, head-first fine-tuning,
early stopping on validation loss, and a resumable checkpoint per epoch.

The same loop runs in one process or as one rank of a DDP process group (Ray Train, training_on_ray.py):
in a group, each rank trains on its shard of every epoch with gradients averaged, `train.batch_size` stays
the global batch (split among the ranks), and the epoch's metrics are summed over all ranks.
"""

import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from cvops.config import Params, TrainParams
from cvops.console import progress
from cvops.data.prepare import DatasetRef
from cvops.errors import ModelError
from cvops.tasks import task
from cvops.training.models import NO_PRETRAINED, backbone_parameters, head_parameters, normalization, resolve_device

log = logging.getLogger("cvops.training")  # the stage: what the epoch lines have always been logged as
MetricsCallback = Callable[[dict[str, float], int], object]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    world_size: int = 1  # processes that trained it: the live process group's size, 1 without one
    backend: str = ""  # the process group's backend (gloo, nccl); empty without one

    @property
    def images_per_second(self) -> float:
        seen = sum(h["train_images"] for h in self.history)
        seconds = sum(h["train_seconds"] for h in self.history)
        return seen / seconds if seconds else 0.0


class CheckpointStore(Protocol):
    """Where a run's per-epoch checkpoints go: a folder here (`Checkpoints`), or Ray Train's storage."""

    def latest(self) -> dict[str, Any]: ...

    def save(self, epoch: int, state: dict[str, Any]) -> None: ...


@dataclass
class Checkpoints:
    """Where a run keeps its per-epoch checkpoints; `run_key` (params and data) must match to resume."""

    directory: Path
    run_key: str

    def latest(self) -> dict[str, Any]:
        found = sorted(self.directory.glob("epoch_*.pt"))
        if not found:
            raise ModelError(f"--resume: no checkpoint in {self.directory}; run without --resume to start afresh")
        return read_checkpoint(found[-1], self.run_key)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        write_checkpoint(self.directory, epoch, state, self.run_key)


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


def write_checkpoint(directory: Path, epoch: int, state: dict[str, Any], run_key: str) -> Path:
    """Write to a temporary name and rename, so a crash never leaves a truncated checkpoint."""
    path = directory / checkpoint_name(epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.partial")
    torch.save({**state, "epoch": epoch, "run_key": run_key}, partial)
    os.replace(partial, path)
    return path


def read_checkpoint(path: Path, run_key: str) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["run_key"] != run_key:
        raise ModelError(f"--resume: {path} was made with other params or data; run without --resume")
    return state


def process_group() -> tuple[int, int, str]:
    """(rank, world size, backend) of this process in the live DDP process group; (0, 1, "") outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), str(dist.get_backend())
    return 0, 1, ""


def _summed(device: torch.device, *values: float) -> list[float]:
    """`values` added up over every rank of the process group (as they are without one)."""
    if process_group()[1] == 1:
        return list(values)
    totals = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return totals.tolist()


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


class Objective(Protocol):
    """What a batch costs: its mean loss, and how many of its images the model got right (None: no such
    count, as for detection, whose quality is measured by evaluation)."""

    def __call__(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int | None]: ...


def run_epoch(
    model: nn.Module,
    loader: DataLoader,
    objective: Objective,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    desc: str = "",
) -> dict[str, float]:
    """One pass over `loader`; trains when an optimizer is given, else evaluates without gradients."""
    training = optimizer is not None
    model.train(training)  # evaluation: BatchNorm running stats, no dropout
    total_loss, correct, seen = 0.0, 0, 0
    counted = True
    start = time.perf_counter()
    with torch.set_grad_enabled(training):
        for batch in progress(loader, desc, unit="batch", leave=False):
            loss, right = objective(model, batch, device)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            total_loss += loss.item() * len(batch[0])
            counted &= right is not None
            correct += right or 0
            seen += len(batch[0])
    seconds = time.perf_counter() - start
    loss_sum, correct_sum, images = _summed(device, total_loss, correct, seen)
    metrics = {"loss": loss_sum / images, "images": images, "seconds": seconds}
    return metrics | ({"accuracy": correct_sum / images} if counted else {})


def _size(dataset: Dataset) -> int:
    """How many items a map-style dataset holds (torch's Dataset type leaves `__len__` to its subclasses)."""
    return len(cast(Sized, dataset))


class _Loop:
    """The model with its data loaders, optimiser, schedule and loss: everything an epoch needs, and
    everything a checkpoint saves so that a resumed run continues as the original would have.

    In a process group, each rank draws its shard of the shuffled training set (DistributedSampler, seeded by
    epoch), trains through DistributedDataParallel, and validates its own slice of the validation set."""

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset,
        params: TrainParams,
        seed: int,
        device: torch.device,
        objective: Objective,
    ) -> None:
        self.model, self.train_set, self.params, self.seed, self.device = model, train_set, params, seed, device
        self.rank, self.world, _ = process_group()
        self.generator = torch.Generator().manual_seed(seed)
        self.sampler: DistributedSampler | None = None
        self.ddp: tuple[DistributedDataParallel, bool] | None = None  # the wrapper and the freeze it was made for
        order: dict[str, Any] = {"shuffle": True, "generator": self.generator}
        if self.world > 1:
            self.sampler = DistributedSampler(train_set, self.world, self.rank, shuffle=True, seed=seed)
            order = {"sampler": self.sampler}
            val_set = Subset(val_set, range(self.rank, _size(val_set), self.world))
        batch_size = max(1, params.batch_size // self.world)
        persistent = params.num_workers > 0
        collate = getattr(train_set, "collate", None)  # a dataset's own batching (detection's), else torch's
        self.train_loader = DataLoader(
            train_set,
            batch_size=batch_size,
            drop_last=_size(train_set) > params.batch_size,
            pin_memory=device.type == "cuda",
            num_workers=params.num_workers,
            persistent_workers=persistent,
            collate_fn=collate,
            **order,
        )
        self.val_loader = DataLoader(
            val_set,
            batch_size=batch_size * 2,
            num_workers=params.num_workers,
            persistent_workers=persistent,
            collate_fn=collate,
        )
        self.optimizer = torch.optim.AdamW(
            [
                {"params": backbone_parameters(model), "lr": params.lr},
                {"params": head_parameters(model), "lr": params.lr * params.head_lr_multiplier},
            ],
            weight_decay=params.weight_decay,
        )
        steps = len(self.train_loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(params.warmup_epochs * steps, params.epochs * steps)
        )
        self.objective = objective

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (backbone frozen for the first freeze_backbone_epochs), then validate."""
        frozen = epoch <= self.params.freeze_backbone_epochs
        for parameter in backbone_parameters(self.model):
            parameter.requires_grad_(not frozen)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        augment = getattr(self.train_set, "augment", None)
        if augment is not None:  # a resumed epoch augments as the original; each rank its own way
            augment.set_random_seed((self.seed + epoch) * self.world + self.rank)
        train = run_epoch(
            self._trained(frozen),
            self.train_loader,
            self.objective,
            self.device,
            self.optimizer,
            self.scheduler,
            f"epoch {epoch}",
        )
        val = run_epoch(self.model, self.val_loader, self.objective, self.device, desc="val")
        metrics = {
            "train_loss": train["loss"],
            "val_loss": val["loss"],
            "train_images": train["images"],
            "train_seconds": train["seconds"],
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if "accuracy" in train:
            metrics |= {"train_accuracy": train["accuracy"], "val_accuracy": val["accuracy"]}
        return metrics

    def _trained(self, frozen: bool) -> nn.Module:
        """The module to train: the model, or in a process group its DDP wrapper, made anew when the backbone
        freezes or thaws (DDP averages the gradients of the parameters that required them when it wrapped)."""
        if self.world == 1:
            return self.model
        if self.ddp is None or self.ddp[1] != frozen:
            device_ids = [self.device] if self.device.type == "cuda" else None
            self.ddp = (DistributedDataParallel(self.model, device_ids=device_ids), frozen)
        return self.ddp[0]

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def _epoch_line(metrics: dict[str, float]) -> str:
    """train loss (and accuracy) | val loss (and accuracy) | speed."""
    parts = [
        " ".join(f"{k} {metrics[f'{split}_{k}']:.4f}" for k in ("loss", "accuracy") if f"{split}_{k}" in metrics)
        for split in ("train", "val")
    ]
    speed = metrics["train_images"] / metrics["train_seconds"]
    return f"train {parts[0]} | val {parts[1]} | {speed:.0f} img/s"


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


@dataclass(frozen=True)
class TrainingInputs:
    """The model to train, the datasets it trains and validates on, and what training minimises (the task's
    objective, or distillation's).

    A dataset augments with its `augment` when it has one (reseeded every epoch) and makes its batches with its
    `collate` when it has one (torch's default batching else)."""

    model: nn.Module
    train_set: Dataset
    val_set: Dataset
    objective: Objective


def train_model(
    inputs: TrainingInputs,
    params: TrainParams,
    *,
    seed: int,
    device: torch.device,
    checkpoints: CheckpointStore | None = None,
    resume: bool = False,
    on_epoch: MetricsCallback | None = None,
) -> TrainResult:
    """Fine-tune `inputs.model`; returns it with the weights of its best validation epoch.

    With `checkpoints`, every epoch is saved; `resume` continues from the newest checkpoint. In a process
    group, every rank calls this; `on_epoch` runs on rank 0 only, `checkpoints.save` on every rank.
    """
    model, train_set = inputs.model, inputs.train_set
    seed_everything(seed)
    torch.set_flush_denormal(True)  # denormal floats slow CPU kernels many times over late in training
    model.to(device).to(memory_format=torch.channels_last)  # NHWC: faster convolutions on CPU (oneDNN) and GPU
    loop = _Loop(model, train_set, inputs.val_set, params, seed, device, inputs.objective)
    rank, world, backend = process_group()
    result = TrainResult(model=model, world_size=world, backend=backend)
    best = _Best(loss=math.inf, weights=copy.deepcopy(model.state_dict()))
    first_epoch = 1
    if resume:
        if checkpoints is None:
            raise ModelError("--resume needs a checkpoint folder")
        state = checkpoints.latest()
        if rank == 0:
            log.info("resuming after epoch %d", state["epoch"])
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
        epochs.set_postfix({k: f"{metrics[k]:.3f}" for k in ("val_loss", "val_accuracy") if k in metrics})
        if rank == 0:
            log.info("epoch %d/%d: %s", epoch, params.epochs, _epoch_line(metrics))
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


Splits = dict[str, tuple[np.ndarray, Any]]  # "train" and "val": (images, targets), as the task's data part loads


def training_inputs(params: Params, ref: DatasetRef, splits: Splits, model: nn.Module | None = None) -> TrainingInputs:
    """The configured model of `ref`'s task, seeded (or `model`, to train further), the datasets it trains and
    validates on and the task's objective."""
    seed_everything(params.base.seed)  # the head's (and a from-scratch model's) initial weights
    model = model if model is not None else new_model(params, ref)
    part = task(ref.task).train
    train_set, val_set = part.datasets(params, splits, *normalization(model))
    return TrainingInputs(model, train_set, val_set, part.objective(params.train))


def new_model(params: Params, ref: DatasetRef, pretrained: bool = True) -> nn.Module:
    """The configured model for `ref`'s task and classes, from the pretrained weights (or none, for weights
    that come from a checkpoint)."""
    weights = params.train.pretrained if pretrained else NO_PRETRAINED
    return task(ref.task).train.new_model(params, ref, weights)


def run_checkpoints(ref: DatasetRef, params: Params, checkpoint_dir: Path | None) -> Checkpoints | None:
    """A run's checkpoints, keyed by its params and data, under `checkpoint_dir` (none without one)."""
    return Checkpoints(checkpoint_dir, f"{params.hash()}-{ref.data_version}") if checkpoint_dir else None


def training_splits(ref: DatasetRef) -> Splits:
    """The (images, targets) of the train and val splits, as `ref`'s task loads them."""
    load = task(ref.task).data.load_split
    return {split: load(ref, split)[:2] for split in ("train", "val")}


def fit(
    ref: DatasetRef,
    params: Params,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_epoch: MetricsCallback | None = None,
) -> TrainResult:
    """Build the configured model and train it in this process on a prepared dataset's train/val splits
    (training_on_ray.fit_on_ray: the same on Ray Train)."""
    inputs = training_inputs(params, ref, training_splits(ref))
    checkpoints = run_checkpoints(ref, params, checkpoint_dir)
    return train_model(
        inputs,
        params.train,
        seed=params.base.seed,
        device=resolve_device(params.base.device),
        checkpoints=checkpoints,
        resume=resume,
        on_epoch=on_epoch,
    )
