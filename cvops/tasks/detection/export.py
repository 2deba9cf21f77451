"""A detector's export check: the torch model's detections on the test split, which its fp32 ONNX file must find
too (numpy post-processing on the ONNX outputs against torchvision's on the torch outputs), and each file's mAP
and agreement with it; int8 ships on the mAP drop and speed-up (cvops/export/quantization.py runs the rest)."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cvops.config import QuantizeParams
from cvops.data.prepare import DatasetRef
from cvops.data.preprocess import model_inputs
from cvops.data.validation import pairwise_iou
from cvops.errors import ModelError
from cvops.export.onnx_model import BOX_OUTPUTS, Preprocessing, detect_outputs
from cvops.export.quantization import Quality
from cvops.tasks.detection.data import BoxSet, load_split
from cvops.tasks.detection.evaluation import Found, fits, found_in_originals, originals
from cvops.tasks.detection.model import Detector, mean_average_precision, predict_boxes
from cvops.tasks.detection.postprocess import FOR_MAP, PostProcess, postprocess
from cvops.training.models import normalization

PARITY_IOU = 0.99  # a detector's fp32 ONNX box is the torch model's when they overlap this much (same class)
AGREEMENT_IOU = 0.5  # an artifact finds the torch model's object when its box overlaps this much (same class)


@dataclass(frozen=True)
class DetectorCheck:
    """The test split (normalised), its boxes in the original images' pixels, and the torch model's detections."""

    preprocessing: Preprocessing
    inputs: np.ndarray
    rows: pd.DataFrame  # the test manifest: the original images' sizes
    truths: list[BoxSet]
    torch_found: Found
    outputs: list[str] = field(default_factory=lambda: list(BOX_OUTPUTS))  # a measured call: the raw outputs

    def answers(self, onnx_session: Any) -> Found:
        """A file's detections on the test split."""
        return onnx_detections(onnx_session, self.inputs, self.preprocessing)

    def parity(self, fp32_answers: Found, params: QuantizeParams) -> float:
        return check_box_parity(fp32_answers, self.torch_found, params)

    def quality(self, answers: Found) -> Quality:
        """A file's test mAP (scored in the original images' pixels) and agreement with the torch model's boxes."""
        agreement, _ = box_agreement(answers, self.torch_found, AGREEMENT_IOU)
        return {"mean_ap": self.mean_ap(answers), "agreement": agreement}

    def agreement(self, answers: Found, reference: Found) -> float:
        """The share of `reference`'s boxes that `answers` finds again (same class, AGREEMENT_IOU)."""
        return box_agreement(answers, reference, AGREEMENT_IOU)[0]

    def torch_quality(self) -> dict[str, float]:
        return {"torch_map": self.mean_ap(self.torch_found)}

    def mean_ap(self, found: Found) -> float:
        pre = self.preprocessing
        scaled = found_in_originals(found, fits(self.rows, pre.image_size, pre.resize))
        return mean_average_precision(scaled, self.truths, self.preprocessing.class_names)["map"]


def export_check(model: nn.Module, ref: DatasetRef) -> DetectorCheck:
    """The torch detector's detections on the test split, and the preprocessing its ONNX file carries (with the
    pyramid's level sizes, which split its outputs)."""
    detector: Detector = model  # type: ignore[assignment]  # a detection task's model
    mean, std = normalization(detector)
    preprocessing = Preprocessing.of(ref, mean, std, level_sizes=detector.level_sizes)
    images, resized, rows = load_split(ref, "test")
    inputs = model_inputs(images, mean, std)
    torch_found = predict_boxes(detector, inputs, torch.device("cpu"))
    truths = originals(resized, fits(rows, ref.image_size, ref.resize))
    return DetectorCheck(preprocessing, inputs, rows, truths, torch_found)


def onnx_detections(
    onnx_session: Any, inputs: np.ndarray, preprocessing: Preprocessing, post: PostProcess = FOR_MAP
) -> Found:
    """A detector file's detections on normalised inputs, post-processed in numpy (as serving does)."""
    (logits, offsets, centerness, anchors), _ = detect_outputs(onnx_session, inputs)
    return postprocess(logits, offsets, centerness, anchors, preprocessing.level_sizes, preprocessing.image_size, post)


def box_agreement(found: Found, reference: Found, min_iou: float = PARITY_IOU) -> tuple[float, float]:
    """The share of `reference`'s boxes that `found` has too (same class, IoU >= `min_iou`, best match each),
    and the largest score difference of those matched."""
    matched, total, worst = 0, 0, 0.0
    for mine, theirs in zip(found, reference, strict=True):
        total += len(theirs["boxes"])
        if not len(theirs["boxes"]) or not len(mine["boxes"]):
            continue
        overlaps = pairwise_iou(theirs["boxes"], mine["boxes"])
        overlaps[theirs["labels"][:, None] != mine["labels"][None, :]] = 0.0
        best = overlaps.argmax(axis=1)
        hit = overlaps[np.arange(len(best)), best] >= min_iou
        matched += int(hit.sum())
        if hit.any():
            worst = max(worst, float(np.abs(theirs["scores"][hit] - mine["scores"][best[hit]]).max()))
    return (matched / total if total else 1.0), worst


def check_box_parity(onnx_found: Found, torch_found: Found, params: QuantizeParams) -> float:
    """The fp32 ONNX detector must find the torch model's boxes with the same scores, or the export changed the
    model; returns the largest score difference of the boxes both find."""
    agreement, difference = box_agreement(onnx_found, torch_found)
    if agreement < params.min_parity_agreement or difference > params.parity_tolerance:
        raise ModelError(
            f"ONNX export differs from the torch detector: it finds {agreement:.4f} of the torch "
            f"model's boxes (min {params.min_parity_agreement}), scores differ by up to "
            f"{difference:.2e} (tolerance {params.parity_tolerance:g})"
        )
    return difference
