"""The distillation loss on logits whose answer is known: the true-label term, the teacher term, and the teacher
seeing the student's images normalised its own way."""

import math

import pytest
import torch
from torch import nn

from cvops.training.distillation import Distillation, _rescale

CPU = torch.device("cpu")


class Fixed(nn.Module):
    """A model that answers `logits` whatever the image, and remembers the images it was given."""

    def __init__(self, logits: list[list[float]], mean: float = 0.5, std: float = 0.25) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.weight = nn.Parameter(torch.zeros(1))  # a gradient flows to the student's answer
        self.pretrained_cfg = {"mean": (mean,) * 3, "std": (std,) * 3}  # what timm reports as its normalization
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.clone())
        return self.logits + self.weight


def batch(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((len(labels), 3, 2, 2), 0.5), torch.tensor(labels)


def test_without_the_teacher_it_is_cross_entropy_and_counts_right_answers() -> None:
    student = Fixed([[2.0, 0.0], [0.0, 1.0]])
    loss, right = Distillation(Fixed([[0.0, 9.0], [9.0, 0.0]]), temperature=4.0, alpha=0.0)(student, batch([0, 0]), CPU)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6) and right == 1


def test_the_teacher_term_is_t_squared_kl_and_zero_when_the_student_answers_as_the_teacher() -> None:
    same = Distillation(Fixed([[1.0, 3.0]]), temperature=2.0, alpha=1.0)
    assert same(Fixed([[1.0, 3.0]]), batch([0]), CPU)[0].item() == pytest.approx(0.0, abs=1e-7)

    teacher, student = torch.softmax(torch.tensor([0.0, 4.0]) / 2, 0), torch.softmax(torch.tensor([0.0, 0.0]) / 2, 0)
    kl = float((teacher * (teacher / student).log()).sum())
    loss, _ = Distillation(Fixed([[0.0, 4.0]]), temperature=2.0, alpha=1.0)(Fixed([[0.0, 0.0]]), batch([0]), CPU)
    assert loss.item() == pytest.approx(4 * kl, rel=1e-5)  # T^2 = 4
    half, _ = Distillation(Fixed([[0.0, 4.0]]), temperature=2.0, alpha=0.5)(Fixed([[0.0, 0.0]]), batch([0]), CPU)
    assert half.item() == pytest.approx(0.5 * 4 * kl + 0.5 * math.log(2), rel=1e-5)


def test_a_teacher_normalised_otherwise_sees_the_image_its_own_way() -> None:
    student, teacher = Fixed([[0.0, 0.0]], mean=0.5, std=0.25), Fixed([[0.0, 0.0]], mean=0.0, std=1.0)
    pixels = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)  # as 0-1 values
    images = (pixels - 0.5) / 0.25  # as the student takes them
    objective = Distillation(teacher, 1.0, 0.5, rescale=_rescale(student, teacher, CPU))
    objective(student, (images, torch.tensor([0])), CPU)
    assert torch.allclose(teacher.seen[0], pixels)  # (x - 0) / 1: the 0-1 values themselves
    assert _rescale(student, Fixed([[0.0]]), CPU) is None  # normalised alike: the images as they are
