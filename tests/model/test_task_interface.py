"""A task defined outside cvops, in one folder (tests/tasks/brightness) and registered with one line, runs
through the stages: training, evaluation, the gate and export. Adding a task means adding a folder."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import EvaluationSetup
from cvops.evaluation.gate import decide
from cvops.export.onnx_model import read_preprocessing
from cvops.export.quantization import quantize
from cvops.tasks import Task, register, unregister
from cvops.training.trainer import fit, training_inputs, training_splits


@pytest.fixture
def brightness() -> Iterator[Task]:
    yield register(Task("brightness", "cvops-brightness", ("digits",), "-", package="tests.tasks.brightness"))
    unregister("brightness")


def test_a_task_in_its_own_folder_trains_is_evaluated_gated_and_exported(
    brightness: Task, digits: DatasetRef, tiny_params: Params, tmp_path: Path
) -> None:
    params = Params.model_validate({"task": "brightness", "data": {"source": "digits"}})
    assert params.registry.model_name == "cvops-brightness"  # its own registered model, as a task's is
    ref = digits.model_copy(update={"task": brightness.name})
    seed = tiny_params.base.seed
    setup = EvaluationSetup(tmp_path, torch.device("cpu"), seed, tiny_params.evaluate, tiny_params.measure)
    untrained = training_inputs(tiny_params, ref, training_splits(ref)).model  # the weights fit starts from

    result = fit(ref, tiny_params)
    evaluation = brightness.val.evaluate(result.model, ref, setup, None)
    assert evaluation.metrics["mae"] < brightness.val.evaluate(untrained, ref, setup, None).metrics["mae"] / 2

    decision = decide(evaluation, tiny_params.gate)
    assert decision.checks[0].name == "within tolerance"

    report = quantize(result.model, ref, tmp_path / "onnx", tiny_params)
    assert read_preprocessing(Path(report.fp32.path)).task == "brightness"
    assert report.fp32.accuracy == pytest.approx(evaluation.metrics["within_tolerance"], abs=0.02)
