"""Entry layer: running the ZenML pipelines on the active stack and reading back what they produced.

Each `launch_*` returns the pipeline's results, or None when a remote orchestrator took the run
asynchronously. A step that fails with a user error (a CvopsError) raises that error here, so the CLI
reports it in one line.
"""

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvops.config import Params, Project
from cvops.env import STREAM_PASSWORD_ENV, environment
from cvops.errors import CvopsError
from cvops.monitoring.trigger import pipeline_lock

if TYPE_CHECKING:
    from cvops.evaluation.gate import GateDecision
    from cvops.evaluation.reports import Evaluation, QuantizationReport
    from cvops.monitoring.drift import DriftVerdict
    from cvops.registry.model_registry import VersionInfo
    from cvops.registry.tracking import TrainedModel

log = logging.getLogger("cvops")
# ZenML 0.98 tries to switch off autologging for MLflow flavours that MLflow 3 no longer has (fastai), and
# warns about it after every step: nothing is wrong, and nothing for the user to do.
_ZENML_TRACKER_LOGGER = "zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker"


class _NoAutologNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to disable MLflow autologging")


_AUTOLOG_NOISE = _NoAutologNoise()
# Where ZenML reports a failed step: its traceback ("Step X failed.") and its message again ("Failed to run step").
_STEP_FAILURE_LOGGERS = ("zenml.orchestrators.local.local_orchestrator", "zenml.orchestrators.step_launcher")


class _StepFailuresOnce(logging.Filter):
    """cvops reports a failed step itself, in one line: the CvopsError the step raised, or an unforeseen error
    with its traceback written to a file (cli/app.py). ZenML's own report of that failure is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info is not None or any(isinstance(arg, BaseException) for arg in record.args or ())
        return not failure


_STEP_FAILURES_ONCE = _StepFailuresOnce()


def tracker_settings(experiment: str) -> dict[str, Any]:
    """ZenML settings that send a pipeline's MLflow logging to `experiment`."""
    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerSettings

    return {"experiment_tracker": MLFlowExperimentTrackerSettings(experiment_name=experiment, nested=False)}


def step_error(failure: RuntimeError) -> Exception:
    """The user error (a CvopsError) a failed step of the latest run raised, else the orchestrator's error.

    ZenML's local orchestrator reports a failed step as a RuntimeError; the step's own exception
    is recorded on the step run.
    """
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    import cvops.errors

    latest = Client().list_pipeline_runs(sort_by="desc:created", size=1).items
    for step in latest[0].steps.values() if latest else []:
        info = step.exception_info
        if step.status != ExecutionStatus.FAILED or info is None or not info.source:
            continue
        error_class = getattr(cvops.errors, info.source.rsplit(".", 1)[-1], None)
        if isinstance(error_class, type) and issubclass(error_class, CvopsError):
            return error_class(f"step {step.name}: {info.message}")
    return failure


def run_pipeline(
    pipeline: Any,
    project: Project,
    experiment: str,
    run_name: str | None = None,
    config: Path | None = None,
    **inputs: Any,
) -> Any:
    """Run `pipeline` with its MLflow logging in `experiment` (created under the checkout's store if new) and
    the ZenML run configuration `config`, if any: the run, or None when a remote orchestrator took it."""
    from cvops.registry.tracking import use_project_store

    use_project_store(project, experiment)  # creates it with its artifact location under mlflow/
    logging.getLogger(_ZENML_TRACKER_LOGGER).addFilter(_AUTOLOG_NOISE)  # once: the same filter is not added twice
    for name in _STEP_FAILURE_LOGGERS:
        logging.getLogger(name).addFilter(_STEP_FAILURES_ONCE)
    options: dict[str, Any] = {"settings": tracker_settings(experiment)}
    if run_name:
        options["run_name"] = run_name
    if config:
        options["config_path"] = str(config)
    try:
        return pipeline.with_options(**options)(**inputs)
    except RuntimeError as err:
        raise step_error(err) from err


@dataclass
class TrainingResult:
    run_name: str
    model_name: str
    info: "VersionInfo"  # the registered version, as it stands after the run
    trained: "TrainedModel"
    evaluation: "Evaluation"
    quantization: "QuantizationReport"
    decision: "GateDecision"
    student: "TrainingResult | None" = None  # distill.enabled: the student's own run and version

    @property
    def version(self) -> str:
        return self.info.version


def training_lock(project: Project) -> AbstractContextManager[None]:
    """Held while training runs (in this checkout, or on the team's state database); refused at once
    (AlreadyRunningError) while another does."""
    return pipeline_lock(project, "training")


def train(
    project: Project,
    params: Params,
    resume: bool = False,
    trigger: dict[str, str] | None = None,
    run_name: str | None = None,
    config: Path | None = None,
) -> TrainingResult | None:
    """Reproduce the data stages, then run the training pipeline, and with distill.enabled the student's after it
    (a run of its own, tagged with its teacher's version); for a caller holding the training lock."""
    from cvops.data.augment import saved_pipeline
    from cvops.data.versioning import reproduce
    from cvops.registry.model_registry import DISTILLED_FROM_TAG
    from cvops.training.models import known_model

    known_model(params.train.model)  # a misspelt name, or the user's module that does not import: now
    if isinstance(params.train.augment, str):
        saved_pipeline(params.train.augment)  # the user's augmentation file loads and keeps an image's size
    if params.distill.enabled:
        known_model(params.distill.student, "distill.student")  # before the teacher trains, not after
    # The data stages first, here: invalid data stops the run with its summary before any step starts.
    # The pipeline's data steps then find DVC up to date and only record the data version.
    reproduce(project, "prepare")
    result = _training_run(project, params, run_name, config, resume=resume, trigger=trigger)
    if result is None and params.distill.enabled:
        log.warning(
            "distill.enabled: no student was trained: it trains in this process after its teacher's run, "
            "and a remote orchestrator took the teacher's"
        )
    if result is not None and params.distill.enabled:
        tags = (trigger or {}) | {DISTILLED_FROM_TAG: result.version}
        result.student = _training_run(
            project, params, run_name and f"{run_name}-student", config, trigger=tags, teacher=result.trained
        )
    return result


def _training_run(
    project: Project, params: Params, run_name: str | None, config: Path | None, **inputs: Any
) -> TrainingResult | None:
    """One run of the training pipeline and what it registered (None when a remote orchestrator took it)."""
    from cvops.pipelines.training import training
    from cvops.registry.model_registry import ModelRegistry
    from cvops.registry.tracking import use_project_store

    run = run_pipeline(training, project, params.mlflow.experiment, run_name, config, params=params, **inputs)
    if run is None:
        return None
    outputs = {name: step.outputs for name, step in run.steps.items()}
    use_project_store(project, params.mlflow.experiment)  # the steps leave MLflow pointing nowhere
    registry = ModelRegistry.of(project, params.registry.model_name)
    return TrainingResult(
        run_name=run.name,
        model_name=registry.name,
        info=registry.get(outputs["register_model"]["model_version"][0].load()),
        trained=outputs["train_model"]["trained_model"][0].load(),
        evaluation=outputs["evaluate_model"]["evaluation"][0].load(),
        quantization=outputs["quantize_model"]["quantization"][0].load(),
        decision=outputs["check_gate"]["gate_decision"][0].load(),
    )


def monitoring_experiment(params: Params) -> str:
    """Monitoring runs go to their own experiment, apart from the training runs that users compare."""
    return f"{params.mlflow.experiment}-monitoring"


def launch_monitoring(
    project: Project, params: Params, window: int | None = None, since: datetime | None = None
) -> "DriftVerdict | None":
    """The monitoring pipeline's verdict on a window of the inference log."""
    from cvops.pipelines.monitoring import monitoring
    from cvops.registry.model_registry import CHAMPION, ModelRegistry
    from cvops.registry.tracking import use_project_store

    use_project_store(project, params.mlflow.experiment)
    ModelRegistry.of(project, params.registry.model_name).resolve(CHAMPION)  # no champion: one line, no pipeline
    run = run_pipeline(monitoring, project, monitoring_experiment(params), params=params, window=window, since=since)
    return None if run is None else run.steps["detect_drift"].outputs["drift_verdict"][0].load()


def launch_batch_inference(
    project: Project, params: Params, input_value: str, output: Path, selector: str, config: Path | None = None
) -> dict[str, int] | None:
    """Score a folder or an s3:// prefix with the `selector` model (the batch_inference pipeline, with the ZenML
    run configuration `config`, if any); the counts, or None when a remote orchestrator took the run."""
    from cvops.pipelines.batch_inference import batch_inference
    from cvops.registry.artifacts import resolve
    from cvops.registry.model_registry import ModelRegistry
    from cvops.registry.tracking import use_project_store
    from cvops.serving.batch import input_location

    location = input_location(input_value)
    use_project_store(project, params.mlflow.experiment)
    resolve(ModelRegistry.of(project, params.registry.model_name), selector, project.onnx_cache)  # fail here
    run = run_pipeline(
        batch_inference,
        project,
        params.mlflow.experiment,
        config=config,
        location=location,
        output=str(output.resolve()),
        selector=selector,
        params=params,
    )
    return None if run is None else run.steps["batch_predict"].outputs["counts"][0].load()


def launch_video(
    project: Project, params: Params, location: str, output: Path, selector: str, duration: float | None = None
) -> dict[str, Any]:
    """Every video at `location` (a file or a folder), or the live source it names (for `duration` seconds),
    through the `selector` model (the video pipeline): the counts, with each video's summary or error."""
    from cvops.pipelines.video import video
    from cvops.registry.artifacts import resolve
    from cvops.registry.model_registry import ModelRegistry
    from cvops.registry.tracking import use_project_store
    from cvops.serving.video.decode import list_videos
    from cvops.serving.video.job import VideoJob
    from cvops.serving.video.live import is_live, without_password

    if not is_live(location):
        list_videos(location)  # no video there (or no S3 keys): one line, no pipeline
        location = location if "://" in location else str(Path(location).resolve())
    use_project_store(project, params.mlflow.experiment)
    resolve(ModelRegistry.of(project, params.registry.model_name), selector, project.onnx_cache)  # fail here
    address, password = without_password(location)  # ZenML stores the job: the password goes to the step aside
    job = VideoJob(selector=selector, location=address, output=output.resolve(), duration=duration)
    with environment({STREAM_PASSWORD_ENV: password} if password else {}):
        run = run_pipeline(video, project, params.mlflow.experiment, job=job, params=params)
    assert run is not None  # the local orchestrator: a remote one is not offered for video yet
    return run.steps["track_videos"].outputs["counts"][0].load()
