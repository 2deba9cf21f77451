"""What differs per task, one folder each, behind one small interface.

A task is a `Task`: what the stages need to know without importing it (its name, registered model, data sources,
service, the unit its data counts and what it supports), and the package holding its parts. Each part is a module
of that package serving one stage, as the protocols below say (Ultralytics' `models/yolo/<task>/{train,val,
predict}.py` are the model): `data`, `train`, `val`, `export`, `report`, `monitor`, `serve`. A stage asks
`task(name).part(...)` for the functions that differ and runs the rest itself; a part is imported on first use, so
the light stages (registry, serving) never import what a task's training needs.

Adding a task means adding a folder with its parts and one `register` line.
"""

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # the parts' signatures only: importing this module imports none of these
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from torch import nn
    from torch.utils.data import Dataset

    from cvops.config import GateParams, MonitorParams, Params, Project, QuantizeParams, TrainParams
    from cvops.data.prepare import DatasetRef
    from cvops.evaluation.evaluator import Champion, EvaluationSetup
    from cvops.evaluation.gate import GateCheck
    from cvops.evaluation.reports import Evaluation
    from cvops.export.onnx_model import Preprocessing
    from cvops.export.quantization import Quality
    from cvops.monitoring.quality import LiveQuality
    from cvops.registry.modelcard import ModelCard, Source
    from cvops.serving.loading import ModelFiles
    from cvops.serving.predictor import Predictor
    from cvops.serving.projection import Projection
    from cvops.tasks.detection.postprocess import PostProcess
    from cvops.training.trainer import Objective, Splits


@dataclass(frozen=True)
class Task:
    """A task as the stages see it before importing any of it."""

    name: str
    model_name: str  # the registered model a checkout of this task trains by default (registry.model_name null)
    sources: tuple[str, ...]  # the data sources whose annotations it learns from; `cvops new` starts with the first
    service: str  # its BentoML service class, "module:Class"
    package: str  # where its parts are, "package.module"
    unit: str = "images"  # what a prepared dataset's class counts count
    distillation: bool = False  # can a student be distilled from its champion (distill.enabled)?
    pruning: bool = False  # can its channels be pruned (prune.enabled)?
    coreml: bool = False  # does coremltools convert its model (export.targets: coreml)?
    traffic: bool = False  # can `cvops traffic` simulate its clients and their true labels?
    crop: bool = True  # may prepare.resize crop an image's edges (a detector's boxes may lie there)?
    own_models: bool = False  # may train.model name the user's function (`package.module:function`)?
    label_audit: bool = False  # one label per image: does the data audit judge its labels?
    truth: str = "label"  # what a true answer is (feedback, the label queue): a label, or "boxes"

    def part(self, stage: str) -> Any:
        """The module of this task's part for `stage` (`data`, `train`, `val`, ...), imported on first use."""
        return import_module(f"{self.package}.{stage}")

    @property
    def data(self) -> "DataPart":
        return cast("DataPart", self.part("data"))

    @property
    def train(self) -> "TrainPart":
        return cast("TrainPart", self.part("train"))

    @property
    def val(self) -> "ValPart":
        return cast("ValPart", self.part("val"))

    @property
    def export(self) -> "ExportPart":
        return cast("ExportPart", self.part("export"))

    @property
    def report(self) -> "ReportPart":
        return cast("ReportPart", self.part("report"))

    @property
    def monitor(self) -> "MonitorPart":
        return cast("MonitorPart", self.part("monitor"))

    @property
    def serve(self) -> "ServePart":
        return cast("ServePart", self.part("serve"))


class DataPart(Protocol):
    def import_raw(self, project: "Project", params: "Params") -> "pd.DataFrame":
        """What the DVC `import` stage runs for this task: the configured source into data/raw; the manifest."""
        ...

    def load_split(self, ref: "DatasetRef", split: str) -> tuple["np.ndarray", Any, "pd.DataFrame"]:
        """Images (N,H,W,3 uint8), their targets (what the model learns) and manifest rows of one split."""
        ...


class TrainPart(Protocol):
    def new_model(self, params: "Params", ref: "DatasetRef", weights: str) -> "nn.Module":
        """The configured model for `ref`'s classes, from `weights` (training.models.NO_PRETRAINED: none)."""
        ...

    def datasets(
        self, params: "Params", splits: "Splits", mean: tuple[float, ...], std: tuple[float, ...]
    ) -> tuple["Dataset", "Dataset"]:
        """The train (augmented as params say) and validation datasets of `splits`' (images, targets)."""
        ...

    def objective(self, params: "TrainParams") -> "Objective":
        """What training and validation minimise, and how many answers a batch got right."""
        ...


class ValPart(Protocol):
    def evaluate(
        self, model: "nn.Module", ref: "DatasetRef", setup: "EvaluationSetup", champion: "Champion | None"
    ) -> "Evaluation":
        """The test-split evidence, with the champion scored on the same images."""
        ...


class ExportCheck(Protocol):
    """A model's answers on the test split, as the export stage checks and measures its ONNX files."""

    preprocessing: "Preprocessing"  # what the ONNX file carries in its metadata
    inputs: "np.ndarray"  # the test split, normalised
    outputs: list[str]  # the ONNX outputs a measured call fetches

    def answers(self, onnx_session: Any) -> Any:
        """An ONNX file's answers on `inputs`."""
        ...

    def parity(self, fp32_answers: Any, params: "QuantizeParams") -> float:
        """Raise ModelError unless the fp32 file reproduces the torch model; the largest difference."""
        ...

    def quality(self, answers: Any) -> "Quality":
        """A file's test quality (first: the metric int8 may lose) and its agreement with the torch model."""
        ...

    def agreement(self, answers: Any, reference: Any) -> float:
        """How far two files' answers agree (top-1 labels; a detector: `reference`'s boxes found again)."""
        ...

    def torch_quality(self) -> dict[str, float]:
        """The torch model's test quality, as QuantizationReport's fields."""
        ...


class ExportPart(Protocol):
    def export_check(self, model: "nn.Module", ref: "DatasetRef") -> ExportCheck: ...


class ReportPart(Protocol):
    SLICE_COUNTS: str  # what a slice's n counts: the model card's slice table's column

    def floors(self, evaluation: "Evaluation", params: "GateParams") -> list["GateCheck"]:
        """The gate's absolute floors on the test metrics."""
        ...

    def headline_metric(self, params: "GateParams") -> tuple[str, float]:
        """The metric the gate compares with the champion's and checks on the shipped artifact, and its floor."""
        ...

    def champion_difference(self, evaluation: "Evaluation") -> tuple[float | None, str]:
        """The paired difference from the (comparable) champion on the headline metric, and a note on its
        uncertainty."""
        ...

    def slice_floor(self, params: "GateParams") -> float:
        """The headline metric's floor on a slice of the test images."""
        ...

    def slice_scores(self, evaluation: "Evaluation") -> list[float | None]:
        """The headline metric on each of evaluation.slices, in order."""
        ...

    def headline(self, metrics: dict[str, float]) -> str:
        """The test metrics a training run ends by printing."""
        ...

    def purpose(self, classes: str, data_source: str) -> tuple[str, str]:
        """What the model is and what it does with `classes`, for the model card's first line and intended use."""
        ...

    def card_metrics(self, card: "ModelCard", picture: "Source") -> list[str]:
        """The model card's metrics section (Markdown lines)."""
        ...

    def quality_notes(self, evaluation: "Evaluation") -> list[str]:
        """The model card's limitations drawn from the metrics: how well they are known, the weakest class."""
        ...

    def card_errors(self, evaluation: "Evaluation", picture: "Source") -> list[str]:
        """The model card's error gallery section (Markdown lines; none for a task without a gallery)."""
        ...


class MonitorPart(Protocol):
    def reference_view(
        self, onnx_path: "Path", ref: "DatasetRef", dims: int, post: "PostProcess"
    ) -> tuple["pd.DataFrame", "Projection", int]:
        """The monitoring reference's table of the train and validation splits, its embedding projection, and
        how many rows hold the model's answers."""
        ...

    def live_quality(
        self, rows: "pd.DataFrame", version: str, tags: dict[str, str], params: "MonitorParams", seed: int
    ) -> "LiveQuality":
        """`version`'s live headline metric on the window's `rows` whose truth came back, against its test value
        (its registry `tags`)."""
        ...


class ServePart(Protocol):
    def predictor(
        self, model: "ModelFiles", opened: Any, max_batch: int, threads: int | None, post: "PostProcess", top_k: int
    ) -> "Predictor":
        """The predictor of `model`'s ONNX file, open already (`opened`): serving.loading.load's answer."""
        ...


_TASKS: dict[str, Task] = {}
DEFAULT_TASK = "classification"  # params.yaml without `task:`


def register(task: Task) -> Task:
    """Make `task` known by its name (params.yaml `task:`); a second registration of a name replaces the first."""
    _TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    _TASKS.pop(name, None)


def task(name: str) -> Task:
    """The task registered as `name`."""
    if name not in _TASKS:
        raise KeyError(f"no task {name!r}; registered: {', '.join(_TASKS)}")
    return _TASKS[name]


def task_names() -> tuple[str, ...]:
    return tuple(_TASKS)


def source_task(source: str) -> Task:
    """The task a data source's annotations serve: the first registered that learns from it."""
    for registered in _TASKS.values():
        if source in registered.sources:
            return registered
    raise KeyError(f"no registered task learns from data source {source!r}")


register(
    Task(
        name="classification",
        model_name="cvops-classifier",
        sources=("elpv", "digits", "fashion-mnist", "folder"),
        service="cvops.serving.service:Classifier",
        package="cvops.tasks.classification",
        distillation=True,
        pruning=True,
        label_audit=True,
        coreml=True,
        traffic=True,
        own_models=True,
    )
)
register(
    Task(
        name="detection",
        model_name="cvops-detector",
        sources=("digit-scenes", "coco", "yolo", "voc"),
        service="cvops.serving.service:Detector",
        package="cvops.tasks.detection",
        unit="boxes",
        crop=False,
        truth="boxes",
    )
)
