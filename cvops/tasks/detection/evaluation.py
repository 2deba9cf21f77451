"""Test-split evidence for a detector: COCO mAP@[.5:.95] and mAP@.5 with bootstrap intervals, per-class AP and
recall, slices (object size, image brightness, manifest attributes), the paired comparison with the champion
on the same images, and example test images with true and predicted boxes drawn.

Boxes are scored in the original images' pixels (a prediction on the resized input is scaled back, as the
service answers), so COCO's object-size ranges mean what they mean for the user's images.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from cvops.config import EvaluateParams
from cvops.data.prepare import DatasetRef
from cvops.data.preprocess import Fit, Resize, model_inputs, resize_image
from cvops.evaluation.evaluator import Champion, EvaluationSetup, brightness, champion_inputs, footprint
from cvops.evaluation.reports import ChampionComparison, Evaluation, SliceMetrics
from cvops.tasks.detection.data import BoxSet
from cvops.tasks.detection.data import load_split as load_detection_split
from cvops.tasks.detection.matching import ImageMatches, bootstrap_map, match_image, mean_ap, paired_map_difference
from cvops.tasks.detection.model import Detector, mean_average_precision, predict_boxes
from cvops.tasks.detection.tracking import Detect, data_version, score_tracking, sequences
from cvops.training.models import normalization

Found = list[dict[str, np.ndarray]]
SIZES = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, np.inf)}  # COCO's, by true box area
EXAMPLES = 8


def fits(rows: pd.DataFrame, size: int, rule: Resize) -> list[Fit]:
    """Per manifest row, where its original image lands in the `size` x `size` input under `rule`."""
    return [Fit.of(w, h, size, rule) for w, h in zip(rows["width"], rows["height"], strict=True)]


def detect_frames(model: Detector, ref: DatasetRef, setup: EvaluationSetup) -> Detect:
    """The model as `cvops run video` serves it: frames resized as its training data was, its served
    post-processing (detect.*), boxes in the frames' pixels."""
    mean, std = normalization(model)

    def detect(frames: list[Image.Image]) -> list[list[dict[str, Any]]]:
        pixels = np.stack([resize_image(frame, ref.image_size, ref.resize) for frame in frames])
        found = predict_boxes(model, model_inputs(pixels, mean, std), setup.device, setup.detect.served)
        answers = []
        for frame, f in zip(frames, found, strict=True):
            boxes = Fit.of(*frame.size, ref.image_size, ref.resize).to_original(f["boxes"])
            answers.append(
                [
                    {"box": [float(v) for v in box], "label": ref.class_names[int(label)], "score": float(score)}
                    for box, label, score in zip(boxes, f["labels"], f["scores"], strict=True)
                ]
            )
        return answers

    return detect


def detect_originals(model: Detector, images: np.ndarray, placed: list[Fit], device: torch.device) -> Found:
    """The model's detections (at the evaluation threshold) on resized `images`, in the originals' pixels."""
    mean, std = normalization(model)
    return found_in_originals(predict_boxes(model, model_inputs(images, mean, std), device), placed)


def found_in_originals(found: Found, placed: list[Fit]) -> Found:
    """Detections on the input mapped to the original images' pixels."""
    return [
        {**f, "boxes": fit.to_original(f["boxes"]).astype(np.float32)} for f, fit in zip(found, placed, strict=True)
    ]


def originals(truths: list[BoxSet], placed: list[Fit]) -> list[BoxSet]:
    """Box sets on the input mapped to the original images' pixels."""
    return [
        (fit.to_original(boxes).astype(np.float32), labels) for (boxes, labels), fit in zip(truths, placed, strict=True)
    ]


def _matches(found: Found, truths: list[BoxSet], num_classes: int) -> list[ImageMatches]:
    return [
        match_image(f["boxes"], f["scores"], f["labels"], boxes, labels, num_classes)
        for f, (boxes, labels) in zip(found, truths, strict=True)
    ]


def _subset_map(found: Found, truths: list[BoxSet], members: np.ndarray, classes: list[str]) -> float:
    picked = np.flatnonzero(members)
    return mean_average_precision([found[i] for i in picked], [truths[i] for i in picked], classes)["map"]


def detection_slices(
    found: Found,
    truths: list[BoxSet],
    metrics: dict[str, float],
    rows: pd.DataFrame,
    images: np.ndarray,
    params: EvaluateParams,
    classes: list[str],
) -> list[SliceMetrics]:
    """mAP per COCO object size (n: true boxes of that size), per brightness quantile of the images, and per
    value of each `evaluate.slice_by` column the manifest has (n: images)."""
    areas = np.concatenate([(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) for b, _ in truths]) if truths else np.empty(0)
    slices = [
        SliceMetrics(
            attribute="object_size",
            value=name,
            n=int(((areas >= low) & (areas < high)).sum()),
            mean_ap=metrics[f"map_{name}"],
        )
        for name, (low, high) in SIZES.items()
        if metrics[f"map_{name}"] >= 0
    ]
    attributes = {c: rows[c].fillna("unknown").astype(str).to_numpy() for c in params.slice_by if c in rows}
    if params.brightness_slices >= 2:
        level = brightness(images)
        edges = np.quantile(level, np.linspace(0, 1, params.brightness_slices + 1)[1:-1])
        names = (
            ["dark", "mid", "bright"]
            if params.brightness_slices == 3
            else [f"q{i + 1}" for i in range(params.brightness_slices)]
        )
        attributes["brightness"] = np.array(names)[np.searchsorted(edges, level, side="right")]
    for attribute, values in attributes.items():
        for value in sorted(set(values)):
            members = values == value
            slices.append(
                SliceMetrics(
                    attribute=attribute,
                    value=str(value),
                    n=int(members.sum()),
                    mean_ap=_subset_map(found, truths, members, classes),
                )
            )
    return slices


@dataclass(frozen=True)
class CandidateDetections:
    """The test split (images, manifest rows, true boxes in the originals' pixels) with the candidate's
    detections matched to the true boxes: what the champion's detections are paired with."""

    images: np.ndarray
    rows: pd.DataFrame
    truths: list[BoxSet]
    matches: list[ImageMatches]


def compare_detectors(
    champion: Champion,
    ref: DatasetRef,
    candidate: CandidateDetections,
    device: torch.device,
    *,
    seed: int,
    resamples: int,
) -> ChampionComparison:
    """The champion scored on the same test images (resized to its input size), and the paired mAP difference."""
    mine = candidate.matches
    paired = champion_inputs(champion, ref, candidate.images, candidate.rows)
    if isinstance(paired, ChampionComparison):
        return paired
    images, note = paired
    placed = fits(candidate.rows, champion.image_size, champion.resize)
    found = detect_originals(champion.model, images, placed, device)  # type: ignore[arg-type]
    theirs = _matches(found, candidate.truths, ref.num_classes)
    difference, low, high = paired_map_difference(mine, theirs, ref.num_classes, seed, resamples)
    return ChampionComparison(
        champion_version=champion.version,
        comparable=True,
        note=note.strip(),
        n=len(images),
        candidate_map=mean_ap(mine, ref.num_classes),
        champion_map=mean_ap(theirs, ref.num_classes),
        map_difference=difference,
        difference_ci95_low=low,
        difference_ci95_high=high,
    )


def draw_examples(
    images: np.ndarray,
    truths: list[BoxSet],
    found: Found,
    classes: list[str],
    path: Path,
    score_threshold: float,
    count: int = EXAMPLES,
) -> Path:
    """A grid of test images (the model's input, doubled) with true boxes in green and detections scoring at
    least `score_threshold` in red, labelled with class and score."""
    size = images.shape[1] * 2
    columns = min(4, count)
    rows_needed = -(-min(count, len(images)) // columns)
    sheet = Image.new("RGB", (columns * (size + 8) + 8, rows_needed * (size + 8) + 8), "white")
    for i in range(min(count, len(images))):
        tile = Image.fromarray(images[i]).resize((size, size), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        for box in truths[i][0] * 2:
            draw.rectangle(box.tolist(), outline=(0, 200, 0), width=2)
        keep = found[i]["scores"] >= score_threshold
        for box, label, score in zip(
            found[i]["boxes"][keep] * 2, found[i]["labels"][keep], found[i]["scores"][keep], strict=True
        ):
            draw.rectangle(box.tolist(), outline=(230, 0, 0), width=1)
            draw.text((box[0] + 2, box[1] + 1), f"{classes[int(label)]} {score:.2f}", fill=(230, 0, 0))
        sheet.paste(tile, (8 + (i % columns) * (size + 8), 8 + (i // columns) * (size + 8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def evaluate_detector(
    model: Detector,
    ref: DatasetRef,
    setup: EvaluationSetup,
    champion: Champion | None = None,
) -> Evaluation:
    """Every piece of a detector's test-split evidence (`evaluation.evaluate` for classifiers); the drawn examples
    show the detections scoring at least detect.score_threshold."""
    out_dir, device, seed, params, measure = setup.out_dir, setup.device, setup.seed, setup.params, setup.measure
    images, resized_truths, rows = load_detection_split(ref, "test")
    placed = fits(rows, ref.image_size, ref.resize)
    truths = originals(resized_truths, placed)
    found = detect_originals(model, images, placed, device)
    metrics = mean_average_precision(found, truths, ref.class_names)
    matches = _matches(found, truths, ref.num_classes)
    metrics["map_ci95_low"], metrics["map_ci95_high"] = bootstrap_map(
        matches, ref.num_classes, seed, params.bootstrap_resamples
    )
    comparison = None
    if champion is not None:
        candidate = CandidateDetections(images, rows, truths, matches)
        comparison = compare_detectors(
            champion, ref, candidate, device, seed=seed, resamples=params.bootstrap_resamples
        )
    tracking_png = tracking_data = ""
    if params.tracking:  # the tracker on videos with true tracks, as `cvops run video` runs it
        videos = sequences(params.tracking, params.tracking_sequences, seed, out_dir / "tracking-videos")
        detect = detect_frames(model, ref, setup)
        scores, picture = score_tracking(detect, videos, ref.class_names, setup.video, setup.detect.nms_iou, out_dir)
        metrics, tracking_png = metrics | scores, str(picture)
        tracking_data = data_version(params.tracking, videos, seed)
    drawn = [{**f, "boxes": fit.to_input(f["boxes"])} for f, fit in zip(found, placed, strict=True)]  # on the input
    examples_png = out_dir / "examples.png"
    examples = draw_examples(images, resized_truths, drawn, ref.class_names, examples_png, setup.detect.score_threshold)
    return Evaluation(
        metrics=metrics,
        class_names=ref.class_names,
        confusion_matrix_png="",
        examples_png=str(examples),
        num_images=len(images),
        task="detection",
        champion=comparison,
        slices=detection_slices(found, truths, metrics, rows, images, params, ref.class_names),
        footprint=footprint(model, ref.image_size, device, measure),
        tracking_png=tracking_png,
        tracking_data=tracking_data,
    )
