"""Typed parameters (mirroring params.yaml) and the project's paths."""

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from cvops import tasks
from cvops.data.preprocess import LEGACY_DECODER, LEGACY_RESIZE, Decoder, Resize
from cvops.env import MLFLOW_TRACKING_URI_ENV, ROOT_ENV, S3_URL_ENV, STATE_ENV
from cvops.errors import ConfigError

if TYPE_CHECKING:
    from cvops.tasks.detection.postprocess import PostProcess

log = logging.getLogger(__name__)
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
# a registered version's number or an alias; YAML reads `version: 3` as a number
Selector = Annotated[str, BeforeValidator(lambda value: str(value) if isinstance(value, int) else value)]
PARAMS_FILE = "params.yaml"
SCHEMA_KEY = "schema"
PARAMS_SCHEMA = 5  # params.yaml's `schema:`; a file without one is schema 1 (written before cvops numbered them)
# Per schema, the keys it brought whose value changes results, with the value that keeps the results of a file
# of the schema before: an older params.yaml is read with them, and `cvops params upgrade` writes them in
SCHEMA_KEYS: dict[int, dict[str, Any]] = {
    2: {"prepare.resize": LEGACY_RESIZE, "validate.max_aspect_ratio": None},
    3: {"prepare.decoder": LEGACY_DECODER},
    4: {"prune.fine_tune_epochs": 2},  # 4 since bench/compression.py: 30% pruned lost 2.3 points with 4, 5.1 with 2
    5: {"audit.enabled": False, "gate.max_leakage": None},  # the data audit, and the gate's leakage check
}
SERVE_PORT = 3000  # BentoML's default: a bento's container listens there, and `cvops serve` unless serve.port says
UI_PORT = 5000  # `cvops ui`: the MLflow UI's default, on 127.0.0.1
Source = Literal["elpv", "digits", "fashion-mnist", "folder", "coco", "yolo", "voc", "digit-scenes"]
SOURCES: tuple[str, ...] = get_args(Source)


REFERENCE = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"  # the user's code: package.module:function


def is_reference(value: str) -> bool:
    """Whether `value` names a function of the user's, `package.module:function` (cvops.references loads it)."""
    return re.match(REFERENCE, value) is not None


def _source(value: str) -> str:
    if value not in SOURCES and not is_reference(value):
        raise ValueError(f"give one of {', '.join(SOURCES)}, or your own reader as package.module:function")
    return value


DataSource = Annotated[str, AfterValidator(_source)]  # a built-in source, or the user's reader (cvops.references)


def _registered(name: str) -> str:
    if name not in tasks.task_names():
        raise ValueError(f"no task {name!r}: one of {', '.join(tasks.task_names())}")
    return name


Task = Annotated[str, AfterValidator(_registered)]  # a registered task's name (cvops.tasks)


def source_task(source: str) -> Task | None:
    """The task a data source's annotations serve: what importing it sets `task:` to (None for the user's own
    reader, which serves the project's task)."""
    return None if is_reference(source) else tasks.source_task(source).name


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)

    @classmethod
    def param_keys(cls) -> dict[str, Any]:
        """Fields by the name params.yaml uses (the alias where one is set)."""
        return {field.alias or name: field for name, field in cls.model_fields.items()}

    def as_params(self) -> dict[str, Any]:
        """The values as params.yaml spells them."""
        return self.model_dump(mode="json", by_alias=True)


class BaseParams(Section):
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"


class DataParams(Section):
    source: DataSource = "elpv"
    path: str | None = None
    annotations: str | None = None  # coco: the annotation JSON file (null: DIR/annotations.json)
    limit_per_class: int | None = Field(None, ge=1)
    scenes: int = Field(600, ge=10)  # digit-scenes: how many scenes to compose
    remote: str = "dvc-remote"


ImageMode = Literal["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]


class ValidateParams(Section):
    on_error: Literal["fail", "quarantine"] = "fail"
    classes: list[str] | None = None
    allowed_modes: list[ImageMode] = ["L", "RGB"]
    min_size: int = Field(8, ge=1)
    max_size: int = Field(4096, ge=1)
    min_per_class: int = Field(10, ge=1)  # images per class; for detection, boxes per class
    max_imbalance_ratio: float = Field(10.0, ge=1.0)
    min_box_size: float = Field(2.0, ge=0.0)  # detection: pixels, each side of every box
    duplicate_iou: Probability = 0.95  # detection: two boxes of one class on one image overlapping this much
    max_aspect_ratio: float | None = Field(10.0, ge=1.0)  # longer side / shorter side of an image (null: any)

    def image_fits(self, width: int, height: int) -> bool:
        """Whether an image of this size passes the size checks (min_size, max_size, max_aspect_ratio)."""
        sized = self.min_size <= min(width, height) and max(width, height) <= self.max_size
        ratio = max(width, height) / max(min(width, height), 1)
        return sized and (self.max_aspect_ratio is None or ratio <= self.max_aspect_ratio)


HOLDOUT = "holdout"  # the split of the images prepare.holdout_fraction keeps out of train, val and test


class AuditParams(Section):
    """The data audit after `prepare` (cvops/data/audit.py): likely label errors, near-duplicates, test images
    leaked into train, outliers; docs: Data audit."""

    enabled: bool = True
    time_budget_s: float = Field(60.0, gt=0.0)  # the label-error ranking stops here ("partial"); the rest runs whole
    folds: int = Field(5, ge=2, le=20)  # out-of-sample probabilities: each image judged by a fit without it
    max_label_probability: Probability = 0.1  # a label error: flagged by confident learning, its label this unlikely
    duplicate_hash_bits: int = Field(48, ge=0, le=256)  # near-duplicates: perceptual hashes (256 bits) this close ...
    duplicate_similarity: Probability = 0.92  # ... and their fine detail this correlated, at the best crop alignment
    outlier_score: float = Field(6.0, gt=0.0)  # an outlier's distance to its neighbours, in robust z-scores


class PrepareParams(Section):
    image_size: int = Field(128, ge=8, le=1024)
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    holdout_fraction: float = Field(0.0, ge=0.0, lt=0.5)  # images in no split: simulated production traffic
    resize: Resize = "stretch"  # how an image that is not square becomes the square input (by measurement: the docs)
    decoder: Decoder = "draft"  # how a JPEG is decoded: full, or draft (scaled down while decoding: preprocess.py)


class AugmentParams(Section):
    hflip: Probability = 0.5
    vflip: Probability = 0.5
    rotate90: Probability = 0.5
    brightness_contrast: Probability = 0.3
    shift_scale_rotate: Probability = 0.3


def _augment_file(value: Any) -> Any:
    if isinstance(value, str) and not value.endswith((".yaml", ".yml", ".json")):
        raise ValueError("give an albumentations pipeline saved with A.save (.yaml or .json), or the probabilities")
    return value


# train.augment: the probabilities, or a file: an albumentations pipeline saved with A.save (project-relative)
Augment = Annotated[AugmentParams | str, BeforeValidator(_augment_file)]


class TrainParams(Section):
    model: str = "tf_efficientnet_lite0"
    pretrained: str = "efficientnet-lite0"
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.0005, gt=0.0)
    head_lr_multiplier: float = Field(2.0, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    freeze_backbone_epochs: int = Field(0, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    early_stopping_patience: int = Field(3, ge=1)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    num_workers: int = Field(0, ge=0)
    augment: Augment = AugmentParams()


class DistillParams(Section):
    """An optional stage after training (classifiers): a smaller student learns from the trained model (the
    teacher), on its softened answers and the true labels, and is evaluated, quantized, gated and registered
    as a version of its own (cvops/training/distillation.py)."""

    enabled: bool = False
    student: str = "mobilenetv3_small_100"  # any timm name
    pretrained: str = "none"  # as train.pretrained: none, a packaged weights name, or a state dict's path
    temperature: float = Field(4.0, gt=0.0)
    alpha: Probability = 0.9  # the teacher's share of the loss; the true labels have the rest
    epochs: int = Field(10, ge=1)


class DetectParams(Section):
    """The detector (task: detection): FCOS on train.model's feature stages, and what it answers with."""

    fpn_channels: int = Field(64, ge=8)  # channels of every pyramid level and of the head
    head_convs: int = Field(2, ge=1)  # conv layers in each branch of the FCOS head
    score_threshold: Probability = 0.3  # served and batch detections scoring below are left out
    nms_iou: Probability = 0.6  # same-class boxes overlapping more are one object: the best-scored is kept
    max_detections: int = Field(100, ge=1)  # per image, best scores first

    @property
    def served(self) -> "PostProcess":
        """The post-processing served and batch detections get (and the monitoring reference's)."""
        from cvops.tasks.detection.postprocess import PostProcess

        return PostProcess(self.score_threshold, self.nms_iou, self.max_detections)


Coordinate = Annotated[float, Field(ge=0.0, le=16384.0)]  # pixels: a frame is at most 16K wide
Point = tuple[Coordinate, Coordinate]


class ZoneParams(Section):
    """A counting zone of `cvops run video`, in the video's pixels: a `line` (two points) that tracks cross, or a
    `polygon` (three points or more) that they enter and leave. A track counts where its box's centre goes."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    line: tuple[Point, Point] | None = None
    polygon: list[Point] | None = Field(None, min_length=3)

    @model_validator(mode="after")
    def _one_shape(self) -> "ZoneParams":
        if (self.line is None) == (self.polygon is None):
            raise ValueError(f"zone {self.name}: give one of line: [[x, y], [x, y]] and polygon: [[x, y], ...]")
        if self.line is not None and self.line[0] == self.line[1]:
            raise ValueError(f"zone {self.name}: the line's two points are the same point")
        if self.polygon is not None and len(set(self.polygon)) < 3:
            raise ValueError(f"zone {self.name}: a polygon needs three different points")
        return self

    @property
    def points(self) -> list[Point]:
        return list(self.line or self.polygon or [])


class VideoParams(Section):
    """`cvops run video`: frames through the served model, a detector's boxes tracked (ByteTrack)."""

    batch_frames: int = Field(8, ge=1)  # frames the model takes in one call (a live source: those that fit its period)
    fps_budget: float | None = Field(None, gt=0.0)  # frames a second to answer as they come (null: a file's every
    # frame, as fast as the machine goes; a live source at its own rate); set, a file plays at its own speed
    reconnect: int = Field(5, ge=0)  # a live source that drops is opened again this many times in a row
    tracker: Literal["bytetrack", "sort"] = "bytetrack"  # detection: the multi-object tracker (bench/video.py)
    track_activation: Probability = 0.5  # a box scoring this much may start a track (lower ones only extend one)
    track_iou: Probability = 0.1  # the least overlap of a box with a track's predicted box to extend it
    track_lost_seconds: float = Field(1.0, ge=0.0)  # a track no box extends is kept this long, then ended
    track_min_frames: int = Field(2, ge=1)  # frames a track needs in a row before it gets an id
    smoothing_seconds: float = Field(0.5, ge=0.0)  # classifier: the label of a frame is averaged over this much
    log_fraction: Probability = 0.02  # share of frames that go to the inference log (drift monitoring)
    annotate: bool = True  # write the video with its boxes (or labels) drawn
    zones: list[ZoneParams] = []  # detection: lines and areas whose crossings are counted, by class and direction
    zone_seconds: float = Field(0.3, ge=0.0)  # how long a track must stay on a zone's other side for its crossing
    # to count (at least a frame): a box whose centre jitters on the boundary is not counted again and again

    @model_validator(mode="after")
    def _distinct_zones(self) -> "VideoParams":
        names = [zone.name for zone in self.zones]
        if len(set(names)) < len(names):
            raise ValueError(f"video.zones: two zones named {max(names, key=names.count)}: give each its own name")
        return self


class EvaluateParams(Section):
    slice_by: list[str] = ["cell_type"]
    brightness_slices: int = Field(3, ge=0, le=10)
    bootstrap_resamples: int = Field(1000, ge=100)
    gallery_per_class: int = Field(3, ge=0, le=20)  # error gallery: wrong, unsure and disagreeing images per class
    # detection: videos with true tracks to score the tracking on (digit-tracks, or a folder of MOTChallenge
    # sequences: <seq>/gt/gt.txt with <seq>/img1/ or a video <seq>.mp4 beside it); null: no tracking score
    tracking: str | None = None
    tracking_sequences: int = Field(3, ge=1, le=50)  # digit-tracks: how many videos, of 90 frames each


class QuantizeParams(Section):
    enabled: bool = True
    calibration_size: int = Field(256, ge=1)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    parity_tolerance: float = Field(1e-3, gt=0.0)
    min_parity_agreement: Probability = 0.99
    max_accuracy_drop: Probability = 0.01
    max_map_drop: Probability = 0.01  # detection: int8 ships only if it loses at most this much mAP against fp32
    min_speedup: float = Field(1.5, gt=0.0)

    def max_drop(self, metric: str) -> float:
        """What int8 may lose of `metric` (accuracy, or a detector's mAP)."""
        return self.max_accuracy_drop if metric == "accuracy" else self.max_map_drop


class PruneParams(Section):
    """Structured pruning (classifiers): whole channels removed from the trained model by their weights' L1 norm
    (torch-pruning's dependency graph removes coupled layers' channels together), then fine-tuned; the pruned
    model is exported and quantized beside the unpruned one, and one rule picks what ships
    (cvops/export/pruning.py)."""

    enabled: bool = False
    ratio: float = Field(0.3, gt=0.0, lt=1.0)  # the share of each prunable layer's channels removed
    fine_tune_epochs: int = Field(4, ge=0)  # on the train split, as train.* trains (0: none)
    max_accuracy_drop: Probability = 0.01  # the pruned file against the unpruned fp32 file, on the test split
    min_speedup: float = Field(1.2, gt=0.0)  # at batch 32, paired calls (measure.*)


Target = Literal["onnx", "openvino", "litert", "coreml"]
TARGETS: tuple[Target, ...] = get_args(Target)


COREML_REFUSED = (
    "coreml is built for classifiers: coremltools 9 cannot convert a {task} model (torchvision's FCOS head, its "
    "constant anchors); use onnx or openvino"
)


class ExportParams(Section):
    """Runtimes beside onnxruntime the shipped model is converted for, each checked and measured on the test split
    (cvops/export/targets.py)."""

    targets: list[Target] = []  # onnx (the shipped file itself), openvino (IR), litert (.tflite), coreml


class MeasureParams(Section):
    """How latency is measured (the torch model, both ONNX files, the gate's budget): see cvops/timing.py."""

    threads: int = Field(1, ge=1)
    runs: int = Field(30, ge=3)

    @property
    def batch_runs(self) -> int:
        """Timed calls per file at batch 32, each costing about 32 of batch 1."""
        return max(5, self.runs // 2)


class InvarianceParams(Section):
    """Least share of test images whose prediction must survive each transform (null: not checked)."""

    hflip: Probability | None = 0.9
    vflip: Probability | None = None
    rotate90: Probability | None = None

    def checks(self) -> dict[str, float]:
        return {name: floor for name, floor in self.model_dump().items() if floor is not None}


class GateParams(Section):
    min_accuracy: Probability = 0.8
    min_macro_f1: Probability = 0.75
    min_class_recall: Probability = 0.6
    min_map: Probability = 0.3  # detection, in place of the three above: COCO mAP@[.5:.95] ...
    min_class_ap: Probability = 0.15  # ... and every class's AP
    non_inferiority_margin: Probability = 0.02  # accuracy (detection: mAP) may trail the champion's by this much
    min_slice_accuracy: Probability = 0.7
    min_slice_map: Probability = 0.2  # detection: every slice's mAP
    min_slice_size: int = Field(30, ge=1)
    max_model_size_mb: float = Field(50.0, gt=0.0)
    max_latency_ms: float = Field(100.0, gt=0.0)
    min_invariance: InvarianceParams = InvarianceParams()
    # the challenger's accuracy on the `recent` slice (labelled production test images) minus the champion's,
    # at least this (null: not checked)
    min_recent_gain: float | None = Field(None, ge=-1.0, le=1.0)
    min_idf1: Probability | None = None  # detection with evaluate.tracking: the tracks' IDF1 (null: not checked)
    max_id_switches_per_track: float | None = Field(None, ge=0.0)  # ... and ID switches per true track
    # test images with a near-copy in the train split (the data audit), at most this many (null: not checked)
    max_leakage: int | None = Field(0, ge=0)


class CanaryParams(Section):
    """A second version answering a share of the requests (`cvops serve --canary`)."""

    version: Annotated[Selector, Field(pattern=r"^([0-9]+|challenger)$")] | None = None
    fraction: float = Field(0.1, gt=0.0, lt=1.0)


class ShadowParams(Section):
    """A version scoring requests off the response path, logged beside the champion (`cvops serve --shadow`)."""

    version: Annotated[Selector, Field(pattern=r"^([0-9]+|[a-z][a-z0-9_-]*)$")] | None = None
    fraction: float = Field(1.0, gt=0.0, le=1.0)


class CaptureParams(Section):
    """Raw request images kept for labelling (`cvops labels queue`): none unless configured."""

    fraction: float = Field(0.0, ge=0.0, le=1.0)  # a random share of the answered images
    below_confidence: Probability | None = None  # and every image whose top score is below this
    store: str = "monitoring/captures"  # in the checkout (a team stack: in its bucket), or s3://bucket/prefix
    retention_days: float = Field(30.0, gt=0.0)  # `cvops gc` deletes older captures

    @property
    def enabled(self) -> bool:
        return self.fraction > 0 or self.below_confidence is not None

    def wants(self, score: float, draw: float) -> bool:
        """Whether to keep an image answered with top score `score` (`draw`: uniform in [0, 1))."""
        return draw < self.fraction or (self.below_confidence is not None and score < self.below_confidence)


class ServeParams(Section):
    port: int = Field(SERVE_PORT, ge=1, le=65535)
    top_k: int = Field(3, ge=1)
    max_request_bytes: int = Field(20_000_000, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=64)
    max_batch_images: int = Field(32, ge=1)
    batch_wait_ms: float = Field(0.0, ge=0.0, le=1000.0)
    poll_seconds: float = Field(5.0, gt=0.0)
    inference_log: str = "monitoring/inference_log"
    workers: Annotated[int | Literal["auto"], BeforeValidator(lambda value: _count(value, "processes"))] = "auto"
    threads: Annotated[int | Literal["auto"], BeforeValidator(lambda value: _count(value, "threads"))] = "auto"
    runtime: Literal["onnxruntime", "openvino"] = "onnxruntime"  # what runs the shipped ONNX file
    access_log: bool = False
    canary: CanaryParams = CanaryParams()
    shadow: ShadowParams = ShadowParams()
    capture: CaptureParams = CaptureParams()

    @property
    def worker_count(self) -> int:
        return _cores() if self.workers == "auto" else int(self.workers)

    @property
    def model_threads(self) -> int | None:
        """The runtime's threads per worker: serve.threads, or (auto) the cores shared out (None with one worker:
        every core)."""
        if self.threads != "auto":
            return int(self.threads)
        return None if self.worker_count == 1 else max(1, _cores() // self.worker_count)


def _count(value: Any, what: str) -> int | str:
    """serve.workers, serve.threads: a number, or auto (pydantic's own message for a union names neither)."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return int(value)
    auto = "one per core" if what == "processes" else "the cores shared out among the workers"
    raise ValueError(f"give a number of {what} (1 or more), or auto ({auto})")


def _cores() -> int:
    """The cores this process may run on (a CPU set or taskset narrows them), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class RegistryParams(Section):
    model_name: str = Field(tasks.task(tasks.DEFAULT_TASK).model_name, min_length=1)  # null in params.yaml: by task
    require_approval: bool = True
    allow_self_approval: bool = False  # team stack: may the MLflow user who trained a version approve it?

    @property
    def bento_name(self) -> str:
        """The registered model's name as BentoML accepts it: the bento's and the service's name."""
        return re.sub(r"[^a-z0-9._-]+", "-", self.model_name.lower()).strip("-._") or "cvops"


class MonitorParams(Section):
    window: int = Field(1000, ge=1)  # newest inference-log rows a monitoring run checks (--window / --since override)
    min_samples: int = Field(100, ge=10)
    false_alarm_rate: float = Field(0.05, gt=0.0, lt=0.5)
    embedding_dims: int = Field(8, ge=1, le=64)
    cooldown_hours: float = Field(24.0, ge=0.0)
    retrain: bool = True
    webhook_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    reports: str = "reports/monitoring"
    min_feedback: int = Field(30, ge=1)  # fewer labelled answers in the window: no live accuracy, never an alarm
    max_accuracy_drop: Probability = 0.05  # alarm when live accuracy's (mAP's) 95% interval is all this far below test


class ScheduleParams(Section):
    monitoring_minutes: float | None = Field(60.0, gt=0.0)
    training_cron: str | None = None


class StateParams(Section):
    # cvops's shared state (locks; CVOPS_STATE_URL wins): none = files in the checkout, postgresql://... for a team
    url: Annotated[str, Field(pattern=r"^postgres(ql)?://\S+$")] | None = None


class DistributedParams(Section):
    """Where heavy work runs: in this process (local), or on Ray (a local instance or a cluster)."""

    engine: Literal["local", "ray"] = "local"
    # null: a Ray instance of this machine, started for the command and stopped after it; "auto": the cluster
    # `ray start` runs here; host:port (a cluster's GCS) or ray://host:port (Ray Client)
    address: Annotated[str, Field(pattern=r"^(auto|(ray://)?[\w.-]+:\d+)$")] | None = None
    train_workers: int = Field(2, ge=1)  # training: Ray Train workers, one DDP process each (world size)
    batch_workers: int = Field(2, ge=1)  # batch inference: scoring actors, each with its own onnxruntime session
    cpus_per_worker: float = Field(1.0, gt=0.0)  # logical CPUs a worker reserves (torch/onnxruntime threads)
    gpus_per_worker: float = Field(0.0, ge=0.0)  # training: > 0 puts each worker on a GPU and uses NCCL
    max_failures: int = Field(1, ge=0)  # training: restarts from the last checkpoint after a worker or node dies
    # training: where Ray Train keeps the run's checkpoints, read and written by every node; null: the
    # project's checkpoints folder, which only serves a cluster whose nodes share this machine's disk
    storage: Annotated[str, Field(pattern=r"^/")] | None = None  # absolute: Ray Train refuses relative paths


class MlflowParams(Section):
    experiment: str = Field("cvops", min_length=1)


class Params(Section):
    task: Task = tasks.DEFAULT_TASK
    base: BaseParams = BaseParams()
    data: DataParams = DataParams()
    # "validate" in params.yaml; not the attribute name, which would shadow pydantic's BaseModel.validate
    validation: ValidateParams = Field(ValidateParams(), alias="validate")
    prepare: PrepareParams = PrepareParams()
    audit: AuditParams = AuditParams()
    train: TrainParams = TrainParams()
    distill: DistillParams = DistillParams()
    detect: DetectParams = DetectParams()
    evaluate: EvaluateParams = EvaluateParams()
    quantize: QuantizeParams = QuantizeParams()
    prune: PruneParams = PruneParams()
    export: ExportParams = ExportParams()
    measure: MeasureParams = MeasureParams()
    gate: GateParams = GateParams()
    registry: RegistryParams = RegistryParams()
    serve: ServeParams = ServeParams()
    monitor: MonitorParams = MonitorParams()
    schedule: ScheduleParams = ScheduleParams()
    mlflow: MlflowParams = MlflowParams()
    state: StateParams = StateParams()
    distributed: DistributedParams = DistributedParams()
    video: VideoParams = VideoParams()

    @model_validator(mode="before")
    @classmethod
    def _model_name_by_task(cls, values: Any) -> Any:
        """registry.model_name null (or absent): the task's own registered model, so champions never mix."""
        if not isinstance(values, dict):
            return values
        registry, task = values.get("registry"), values.get("task") or tasks.DEFAULT_TASK
        unnamed = registry is None or (isinstance(registry, dict) and registry.get("model_name") is None)
        if unnamed and task in tasks.task_names():  # an unknown task: the error is the task's, not the name's
            values = {**values, "registry": {**(registry or {}), "model_name": tasks.task(task).model_name}}
        return values

    @model_validator(mode="after")
    def _check_fractions(self) -> "Params":
        if self.prepare.val_fraction + self.prepare.test_fraction >= 0.8:
            raise ValueError("prepare.val_fraction + prepare.test_fraction must stay below 0.8")
        if self.data.source not in tasks.task(self.task).sources and not is_reference(self.data.source):
            raise ValueError(
                f"data.source {self.data.source} serves {source_task(self.data.source)}, but task is "
                f"{self.task}: set task: {source_task(self.data.source)} (`cvops data import` sets both)"
            )
        if self.prepare.resize == "crop" and not tasks.task(self.task).crop:
            raise ValueError(
                f"prepare.resize crop cuts off the edges of an image and what lies there; a {self.task} model "
                "needs all of it: use letterbox or stretch"
            )
        if is_reference(self.train.model) and not tasks.task(self.task).own_models:
            raise ValueError(
                f"train.model {self.train.model}: a model of your own is a classifier's; a {self.task} model is "
                "built on a timm backbone: name one (e.g. tf_efficientnet_lite0)"
            )
        if is_reference(self.train.model) and self.train.pretrained != "none":
            raise ValueError(
                f"train.pretrained {self.train.pretrained}: a model of your own ({self.train.model}) loads its own "
                "weights in its function: set train.pretrained none"
            )
        if self.distill.enabled and not tasks.task(self.task).distillation:
            raise ValueError(
                f"distill.enabled: distillation trains a classifier's student; set it false for {self.task}"
            )
        if self.prune.enabled and not tasks.task(self.task).pruning:
            raise ValueError(
                f"prune.enabled: pruning is built for classifiers (a {self.task} model's pruned heads would need a "
                "gate of their own, not measured yet); set it false for this task"
            )
        if "coreml" in self.export.targets and not tasks.task(self.task).coreml:
            raise ValueError(f"export.targets: {COREML_REFUSED.format(task=self.task)}")
        return self

    def student(self) -> "Params":
        """The parameters a distilled student trains with: the student's model, weights and epochs in train.*."""
        distill = self.distill
        train = self.train.model_copy(
            update={"model": distill.student, "pretrained": distill.pretrained, "epochs": distill.epochs}
        )
        return self.model_copy(update={"train": train})

    def hash(self) -> str:
        """Short, stable hash of every value: the `params_hash` lineage tag."""
        canonical = json.dumps(self.as_params(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted keys, as MLflow params and -S overrides name them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node: Any = tree
    parts = dotted.split(".")
    model: type[Section] = Params
    for depth, part in enumerate(parts):
        field = model.param_keys().get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "params"
            valid = ", ".join(model.param_keys())
            raise ConfigError(f"unknown parameter '{dotted}': {where} has no key '{part}' (valid: {valid})")
        if depth == len(parts) - 1:
            node[part] = value
            return
        kinds = get_args(field.annotation) or (field.annotation,)
        section = next((kind for kind in kinds if isinstance(kind, type) and issubclass(kind, Section)), None)
        if section is None:
            raise ConfigError(
                f"unknown parameter '{dotted}': '{'.'.join(parts[: depth + 1])}' is a value, not a section"
            )
        model = section
        if len(kinds) > 1 and isinstance(node.get(part), str):  # train.augment: a file, and now one of its keys:
            node[part] = {}  # the section, from its defaults
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"parameter section '{'.'.join(parts[: depth + 1])}' must be a mapping")


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Parse `key.path=value` strings; values are read as YAML scalars (3, 1e-3, true, null)."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad override '{item}': write it as section.key=value, e.g. train.epochs=3")
        parsed.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
    return parsed


def _param_path(loc: tuple[int | str, ...]) -> str:
    """An error's location as params.yaml names it: without the member names pydantic adds inside a union."""
    names: list[str] = []
    model: type[Section] | None = Params
    union = False
    for part in loc:
        if union:  # the member of a union the error is about (AugmentParams, str): not a key
            union = False
            continue
        names.append(str(part))
        field = model.param_keys().get(str(part)) if model is not None else None
        kinds = (get_args(field.annotation) or (field.annotation,)) if field is not None else ()
        union = len(kinds) > 1 and any(isinstance(kind, type) and issubclass(kind, Section) for kind in kinds)
        model = next((kind for kind in kinds if isinstance(kind, type) and issubclass(kind, Section)), None)
    return ".".join(names)


def _format_validation_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    key = _param_path(first["loc"])
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown parameter '{key}' (misspelt? see params.yaml for the valid keys)"
    where = f"'{key}' = {value!r}" if key else "params"
    return f"{origin}: {where}: {first['msg']}"


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path} not found: {what}")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}".splitlines()[0]) from err
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (base, data, train, ...)")
    return tree


def read_overlay(path: Path) -> list[tuple[str, Any]]:
    """The (key, value) pairs of a params overlay: a YAML file with some of params.yaml's sections and keys."""
    pairs = list(flatten(_read_mapping(path, "give the path of a params overlay, e.g. overlays/digits.yaml")).items())
    for key, _ in pairs:
        _set_dotted({}, key, None)  # a misspelt key is named now, with the overlay's file name
    return pairs


def schema_of(tree: dict[str, Any], origin: str) -> int:
    """The schema a params file's mapping declares (none: 1); an error for one newer than this cvops reads."""
    schema = tree.get(SCHEMA_KEY, 1)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise ConfigError(
            f"{origin}: '{SCHEMA_KEY}' = {schema!r}: the file's format version, a whole number (now {PARAMS_SCHEMA})"
        )
    if schema > PARAMS_SCHEMA:
        raise ConfigError(
            f"{origin} is schema {schema}, newer than this cvops reads ({PARAMS_SCHEMA}): upgrade cvops "
            "(pip install --upgrade cvops)"
        )
    return schema


def _schema_keys(tree: dict[str, Any], schema: int) -> list[tuple[str, Any]]:
    """The keys the schemas after `schema` brought that `tree` lacks, with the values that keep its results."""
    flat = flatten(tree)
    later = [SCHEMA_KEYS.get(version, {}) for version in range(schema + 1, PARAMS_SCHEMA + 1)]
    return [(key, value) for keys in later for key, value in keys.items() if key not in flat]


def read_params_tree(path: Path, what: str = "run cvops from a project checkout") -> dict[str, Any]:
    """A params file's sections as this cvops reads them: a file of an older schema with, for each key it
    predates, the value that keeps its results (SCHEMA_KEYS), and a note on how to upgrade it."""
    tree = _read_mapping(path, what)
    schema = schema_of(tree, path.name)
    tree.pop(SCHEMA_KEY, None)
    if schema < PARAMS_SCHEMA:
        _note_older_schema(path, schema)
        for key, value in _schema_keys(tree, schema):
            _set_dotted(tree, key, value)
    return tree


@cache
def _note_older_schema(path: Path, schema: int) -> None:
    log.warning(
        "%s is schema %d: read as it was written (%s); `cvops params upgrade` makes it schema %d",
        path.name,
        schema,
        ", ".join(f"{key}: {_yaml_scalar(value)}" for key, value in SCHEMA_KEYS[schema + 1].items()),
        PARAMS_SCHEMA,
    )


def _yaml_scalar(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def load_params(path: Path, overrides: list[str] | None = None, overlay: Path | None = None) -> Params:
    """Read params.yaml, apply an overlay file and then `-S key=value` overrides, and validate everything."""
    tree = read_params_tree(path, "run cvops from a project checkout (or `cvops init` there)")
    pairs = (read_overlay(overlay) if overlay else []) + parse_overrides(overrides or [])
    for key, value in pairs:
        _set_dotted(tree, key, value)
    try:
        return Params.model_validate(tree)
    except ValidationError as err:
        origin = f"{path.name}{f' + {overlay.name}' if overlay else ''}"
        raise ConfigError(_format_validation_error(err, origin)) from err


@dataclass(frozen=True)
class Project:
    """A cvops checkout: where params.yaml is, and every local-state path derived from it."""

    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> "Project":
        """The checkout named by CVOPS_ROOT, else the nearest directory upwards holding params.yaml."""
        if env_root := os.environ.get(ROOT_ENV):
            return cls(Path(env_root).resolve())
        here = (start or Path.cwd()).resolve()
        for candidate in (here, *here.parents):
            if (candidate / PARAMS_FILE).is_file():
                return cls(candidate)
        raise ConfigError(
            f"no {PARAMS_FILE} in {here} or above: run cvops inside a cvops project, or create one (`cvops new DIR`)"
        )

    @property
    def params_file(self) -> Path:
        return self.root / PARAMS_FILE

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def validated_dir(self) -> Path:
        return self.data_dir / "validated"

    @property
    def production_dir(self) -> Path:
        """Labelled production images (`cvops labels import`): a dependency of DVC's import stage."""
        return self.data_dir / "production"

    @property
    def prepared_dir(self) -> Path:
        return self.data_dir / "prepared"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def zenml_dir(self) -> Path:
        return self.root / ".zen"

    @property
    def locks_dir(self) -> Path:
        """The checkout's lock files, when the state is local (no state URL)."""
        return self.monitoring_dir / "locks"

    @cached_property
    def state_url(self) -> str | None:
        """Where cvops's shared state lives: CVOPS_STATE_URL, else params.yaml `state.url`; None: in the checkout."""
        return os.environ.get(STATE_ENV) or self.params().state.url

    @property
    def bentoml_home(self) -> Path:
        """BentoML's model and bento store, and the cache of served ONNX files."""
        return self.root / "bentos"

    @property
    def manifests_dir(self) -> Path:
        """Kubernetes manifests for the bentos `cvops package` builds (a kustomize folder per version)."""
        return self.bentoml_home / "kubernetes"

    @property
    def onnx_cache(self) -> Path:
        """Shipped ONNX files and monitoring references of served versions, downloaded once from MLflow."""
        return self.bentoml_home / "onnx"

    @property
    def monitoring_dir(self) -> Path:
        """Inference log, drift-episode state and trigger audit, scheduler job store, pipeline locks."""
        return self.root / "monitoring"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @cached_property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: MLFLOW_TRACKING_URI when set (a remote server), else the local SQLite store."""
        return os.environ.get(MLFLOW_TRACKING_URI_ENV) or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    def inference_log(self, serve: "ServeParams") -> Path | str:
        """Where every prediction is logged: the team's state database (shared by every serving replica) when
        there is one, else the folder `serve.inference_log` in the checkout."""
        return self.state_url or self.root / serve.inference_log

    def capture_store(self, serve: "ServeParams") -> str:
        """Where captured request images go: `serve.capture.store` when it is an s3:// prefix; else that path
        under the team's bucket when there is a team stack (every replica's captures in one place, as the
        inference log), or under the checkout."""
        store = serve.capture.store
        if store.startswith("s3://"):
            return store.rstrip("/")
        team = os.environ.get(S3_URL_ENV)
        return f"{team.rstrip('/')}/{store.strip('/')}" if team else str(self.root / store)

    @property
    def tracking_server(self) -> bool:
        """True when MLflow is a tracking server (the team stack), not the checkout's SQLite store."""
        return self.tracking_uri.startswith(("http://", "https://"))

    @property
    def artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    def params(self, overrides: list[str] | None = None) -> Params:
        return load_params(self.params_file, overrides)

    def set_params(self, overrides: list[str]) -> tuple[Params, list[tuple[str, Any]]]:
        """Validate `key=value` overrides and write them into params.yaml (`cvops params set`), keeping its
        comments and layout. Returns the parameters and the (key, value) pairs that changed."""
        return self._write_params(parse_overrides(overrides))

    @contextmanager
    def overlaid(self, overlay: Path | None, overrides: list[str] | None = None) -> Iterator[Params]:
        """params.yaml with an overlay's values, then `overrides` (-S), written into it for the block and
        restored byte for byte afterwards, however the block ends: DVC's data stages and the pipeline read them
        there, and params.yaml stays as it was. With neither, the parameters as they are."""
        pairs = (read_overlay(overlay) if overlay else []) + parse_overrides(overrides or [])
        if not pairs:
            yield self.params()
            return
        original = self.params_file.read_bytes()
        try:
            params, _ = self._write_params(pairs)
            yield params
        finally:
            _replace(self.params_file, original)

    def params_schema(self) -> int:
        """The schema params.yaml declares (1 without one)."""
        return schema_of(_read_mapping(self.params_file, "run cvops from a project checkout"), PARAMS_FILE)

    def upgrade_params(self) -> tuple[int, list[tuple[str, Any]]]:
        """Rewrite params.yaml in this cvops's schema (`cvops params upgrade`), keeping its comments and layout:
        each key a later schema brought is written with the value that keeps the file's results. Returns the
        schema the file had and the keys written (none when it is already current)."""
        schema = self.params_schema()
        if schema == PARAMS_SCHEMA:
            return schema, []
        added = _schema_keys(_read_mapping(self.params_file, "run cvops from a project checkout"), schema)
        self._rewrite(added, schema=PARAMS_SCHEMA)
        return schema, added

    def _write_params(self, pairs: list[tuple[str, Any]]) -> tuple[Params, list[tuple[str, Any]]]:
        tree = read_params_tree(self.params_file)
        current = flatten(Params.model_validate(tree).as_params())
        for key, value in pairs:
            _set_dotted(tree, key, value)
        try:
            params = Params.model_validate(tree)
        except ValidationError as err:
            raise ConfigError(_format_validation_error(err, self.params_file.name)) from err
        wanted = flatten(params.as_params())
        changed = [(key, wanted[key]) for key in dict(pairs) if current.get(key) != wanted.get(key)]
        if changed:  # untouched, params.yaml stays byte for byte as committed (no false git_dirty)
            self._rewrite(changed)
        return params, changed

    def _rewrite(self, changes: list[tuple[str, Any]], schema: int | None = None) -> None:
        """Set `changes` (dotted keys) in params.yaml, and `schema:` at its top when given, through a
        round-trip YAML editor that keeps every comment; a key new to the file gets the template's comment."""
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        editor = YAML()  # round-trip: keeps comments and layout
        editor.representer.add_representer(
            type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
        )
        tree = editor.load(self.params_file.read_text(encoding="utf-8"))
        template = editor.load(TEMPLATE_PARAMS.read_text(encoding="utf-8"))
        if schema is not None:
            tree.insert(0, SCHEMA_KEY, schema)
            _comment_like_template(tree, template, SCHEMA_KEY)
        for key, value in changes:
            node, model, closing = tree, template, None
            *sections, leaf = key.split(".")
            for section in sections:
                if not isinstance(node.get(section), dict):  # train.augment, a file, set by one of its keys:
                    closing = node.ca.items.pop(section, None)  # its line's comment goes to the section's end
                    node[section] = CommentedMap()
                node, model = node[section], model.get(section, {})
            if isinstance(value, list):  # [L, RGB] stays on its line, as params.yaml writes lists
                value = CommentedSeq(value)
                value.fa.set_flow_style()
            before, replaced = list(node), node.get(leaf)
            node[leaf] = value
            if leaf not in before:
                _comment_like_template(node, model, leaf, after=before[-1] if before else None)
            elif isinstance(replaced, dict) and replaced and not isinstance(value, dict):
                _keep_closing_lines(replaced, node, leaf)  # a section became a value (train.augment: a file)
            if closing is not None:
                node.ca.items[leaf] = closing
        text = io.StringIO()
        editor.dump(tree, text)
        _replace(self.params_file, text.getvalue().encode("utf-8"))


TEMPLATE_PARAMS = Path(__file__).parent / "project_template" / PARAMS_FILE  # a new project's: every key, commented


def _keep_closing_lines(section: Any, node: Any, key: str) -> None:
    """The blank lines that closed a replaced section (held by its last key's comment) now follow `key`."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    closing = section.ca.items.get(list(section)[-1], [None] * 3)[2]
    if closing is not None and "\n" in closing.value:
        tail = closing.value[closing.value.index("\n") :]
        if tail.count("\n") > 1:
            node.ca.items[key] = [None, None, CommentToken(tail, CommentMark(0), None), None]


def _comment_like_template(node: Any, template: Any, key: str, after: str | None = None) -> None:
    """Give `key`, new in a section of params.yaml, the end-of-line comment it has in the template's section.
    Appended `after` the section's last key, it takes over the blank lines that closed the section."""
    token = getattr(template, "ca", None) and template.ca.items.get(key, [None] * 3)[2]
    if not token:
        return
    node.yaml_add_eol_comment(token.value.strip().splitlines()[0], key, column=token.column)
    closing = node.ca.items.get(after, [None] * 3)[2] if after else None
    if closing and closing.value.count("\n") > 1:  # "# its comment\n\n": the blank line moves below `key`
        first, rest = closing.value.split("\n", 1)
        closing.value = first + "\n"
        mine = node.ca.items[key][2]
        mine.value = mine.value.rstrip("\n") + "\n" + rest


def _replace(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file and a rename: readers see the old file or the new one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
