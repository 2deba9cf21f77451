"""A detector's test-split evidence (the `val` part): cvops.tasks.detection.evaluation's."""

from typing import cast

from torch import nn

from cvops.data.prepare import DatasetRef
from cvops.evaluation.evaluator import Champion, EvaluationSetup
from cvops.evaluation.reports import Evaluation
from cvops.tasks.detection.evaluation import evaluate_detector
from cvops.tasks.detection.model import Detector


def evaluate(model: nn.Module, ref: DatasetRef, setup: EvaluationSetup, champion: Champion | None) -> Evaluation:
    """COCO mAP with its interval, per-class AP and recall, slices, footprint, drawn examples (detections from
    setup.score_threshold) and the paired comparison with the champion."""
    return evaluate_detector(cast(Detector, model), ref, setup, champion)
