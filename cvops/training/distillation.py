"""Knowledge distillation: a smaller student learns from a trained teacher's softened class probabilities
(Hinton et al., 2015) together with the true labels, in the same training loop as any model."""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.training.models import normalization, resolve_device
from cvops.training.trainer import (
    MetricsCallback,
    TrainResult,
    run_checkpoints,
    train_model,
    training_inputs,
    training_splits,
)


@dataclass
class Distillation:
    """A student's loss on (images, labels) batches: `alpha` x T^2 x KL(teacher || student), both softened by the
    temperature T, plus (1 - `alpha`) x cross-entropy with the true labels. The T^2 keeps the soft term's
    gradients the size of the hard term's whatever T is. A right answer is the student's top class."""

    teacher: nn.Module
    temperature: float
    alpha: float
    label_smoothing: float = 0.0
    rescale: tuple[torch.Tensor, torch.Tensor] | None = None  # the student's input to the teacher's normalization

    def __call__(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int | None]:
        images = batch[0].to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = batch[1].to(device, non_blocking=True)
        logits = model(images)
        with torch.no_grad():
            taught = images if self.rescale is None else images * self.rescale[0] + self.rescale[1]
            soft_targets = functional.log_softmax(self.teacher(taught) / self.temperature, dim=1)
        soft = (
            functional.kl_div(
                functional.log_softmax(logits / self.temperature, dim=1),
                soft_targets,
                reduction="batchmean",
                log_target=True,
            )
            * self.temperature**2
        )
        hard = functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        loss = self.alpha * soft + (1 - self.alpha) * hard
        return loss, int((logits.argmax(1) == labels).sum().item())


def _rescale(student: nn.Module, teacher: nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) that turn an image normalised for the student into one normalised for the teacher, or
    None when both normalise alike."""
    (s_mean, s_std), (t_mean, t_std) = normalization(student), normalization(teacher)
    if (s_mean, s_std) == (t_mean, t_std):
        return None
    s_mean_, s_std_, t_mean_, t_std_ = (
        torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (s_mean, s_std, t_mean, t_std)
    )
    return s_std_ / t_std_, (s_mean_ - t_mean_) / t_std_


def distill(
    ref: DatasetRef,
    params: Params,
    teacher: nn.Module,
    *,
    checkpoint_dir: Path | None = None,
    on_epoch: MetricsCallback | None = None,
) -> TrainResult:
    """Train the student of `params.distill` (its model, weights and epochs in place of train.*'s) on a prepared
    dataset's train/val splits against `teacher`, in this process; its validation loss (what early stopping
    watches) is the same blend. Its checkpoints are its own, under `checkpoint_dir`."""
    student = params.student()
    device = resolve_device(student.base.device)
    inputs = training_inputs(student, ref, training_splits(ref))
    teacher = teacher.eval().to(device)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    objective = Distillation(
        teacher,
        params.distill.temperature,
        params.distill.alpha,
        student.train.label_smoothing,
        _rescale(inputs.model, teacher, device),
    )
    return train_model(
        replace(inputs, objective=objective),
        student.train,
        seed=student.base.seed,
        device=device,
        checkpoints=run_checkpoints(ref, student, checkpoint_dir),
        on_epoch=on_epoch,
    )
