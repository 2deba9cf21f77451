"""A classifier's test-split evidence (the `val` part): cvops.evaluation.evaluator's."""

from torch import nn

from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import Champion, EvaluationSetup
from cvops.evaluation.evaluator import evaluate as evaluate_classifier
from cvops.evaluation.reports import Evaluation


def evaluate(model: nn.Module, ref: DatasetRef, setup: EvaluationSetup, champion: Champion | None) -> Evaluation:
    """Metrics with intervals, calibration, confusion matrix, slices, the behavioural checks of
    setup.invariance_checks, footprint, the error gallery and the paired comparison with the champion."""
    return evaluate_classifier(model, ref, setup, champion)
