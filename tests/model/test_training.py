"""The training loop on real digits: it learns, it is reproducible, and it resumes after a crash."""

from pathlib import Path

import pytest
import torch

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.errors import ModelError
from cvops.evaluation.evaluator import EvaluationSetup, evaluate
from cvops.training.trainer import TrainResult, fit

pytestmark = pytest.mark.slow


def test_digits_reach_90_percent_test_accuracy(
    trained: TrainResult, digits: DatasetRef, tiny_params: Params, tmp_path: Path
) -> None:
    setup = EvaluationSetup(
        tmp_path, torch.device("cpu"), 0, tiny_params.evaluate, tiny_params.measure, invariance_checks=("hflip",)
    )
    evaluation = evaluate(trained.model, digits, setup)
    accuracy = evaluation.metrics["accuracy"]
    assert accuracy >= 0.9
    assert evaluation.metrics["accuracy_ci95_low"] < accuracy < evaluation.metrics["accuracy_ci95_high"]
    assert 0.0 <= evaluation.metrics["ece"] < 0.2
    assert evaluation.num_images == sum(digits.counts["test"].values())
    assert Path(evaluation.confusion_matrix_png).stat().st_size > 0
    # behavioural: digits are not mirror-symmetric, so a model that learnt them changes many predictions
    # under a horizontal flip (that is why the tiny params switch the hflip gate off)
    assert evaluation.invariance["hflip"] < 0.7
    assert {s.attribute for s in evaluation.slices} == {"brightness"}  # digits carry no metadata columns
    assert sum(s.n for s in evaluation.slices) == evaluation.num_images


def test_history_has_one_entry_per_epoch_and_best_epoch_has_lowest_val_loss(
    trained: TrainResult, tiny_params: Params
) -> None:
    losses = [h["val_loss"] for h in trained.history]
    assert len(losses) <= tiny_params.train.epochs
    assert losses[trained.best_epoch - 1] == min(losses)
    assert trained.images_per_second > 0


class Crash(RuntimeError):
    pass


def test_resume_after_crash_continues_where_it_stopped(digits: DatasetRef, tiny_params: Params, tmp_path: Path) -> None:
    params = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"epochs": 3})})
    uninterrupted = fit(digits, params, checkpoint_dir=tmp_path / "full")

    def crash_after_two(metrics: dict[str, float], epoch: int) -> None:
        if epoch == 2:
            raise Crash

    with pytest.raises(Crash):
        fit(digits, params, checkpoint_dir=tmp_path / "crashed", on_epoch=crash_after_two)
    # The crash hit before epoch 2's checkpoint was written: resume redoes epoch 2.
    assert sorted(p.name for p in (tmp_path / "crashed").glob("*.pt")) == ["epoch_001.pt"]
    resumed = fit(digits, params, checkpoint_dir=tmp_path / "crashed", resume=True)

    assert len(resumed.history) == 3
    for a, b in zip(resumed.history, uninterrupted.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)


def test_resume_refuses_checkpoints_of_other_params(digits: DatasetRef, tiny_params: Params, tmp_path: Path) -> None:
    one_epoch = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"epochs": 1})})
    fit(digits, one_epoch, checkpoint_dir=tmp_path)
    other = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"lr": 0.01})})
    with pytest.raises(ModelError, match="other params"):
        fit(digits, other, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ModelError, match="no checkpoint"):
        fit(digits, other, checkpoint_dir=tmp_path / "empty", resume=True)
