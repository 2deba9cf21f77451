"""The `cvops` command line: the entry layer that sets up the process and launches pipelines."""

import contextlib
import logging
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cvops.config import SOURCES, Params, Project
from cvops.errors import ConfigError, CvopsError, GateFailedError, ServiceUnavailable
from cvops.monitoring.shifts import SHIFTS

if TYPE_CHECKING:
    from datetime import datetime

    from cvops.registry import ModelRegistry, VersionInfo

log = logging.getLogger("cvops")
OVERRIDE_HELP = "Override a parameter for this run, e.g. -S train.epochs=3 (repeatable)."


def _fail(message: str, code: int) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print a CvopsError as one line and exit with its code, instead of a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CvopsError as err:
            _fail(str(err), err.exit_code)
        except Exception as err:  # a step failure wraps the user's error; find it
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, CvopsError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            _fail(str(cause), cause.exit_code)

    return wrapper


def _project() -> Project:
    from cvops.stack import configure_environment

    project = Project.find()
    configure_environment(project)
    return project


def _registry(project: Project, params: Params | None = None) -> "ModelRegistry":
    from cvops.registry import ModelRegistry
    from cvops.tracking import use_project_store

    params = params or project.params()
    use_project_store(project, params.mlflow.experiment)
    return ModelRegistry(params.registry.model_name, project.registry_lock)


def _set_params(project: Project, overrides: list[str]) -> Params:
    params, changed = project.set_params(overrides)
    for key, value in changed:
        click.echo(f"params.yaml: {key} = {value}")
    return params


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs.")
def main(verbose: bool) -> None:
    """cvops: an offline-first MLOps pipeline for image classifiers.

    \b
    Quick start:
      cvops init                    # local ZenML stack, MLflow store, DVC
      cvops data import elpv        # or: digits | fashion-mnist | folder --path DIR
      cvops run training            # train, evaluate, register
      cvops ui                      # compare runs in the MLflow UI
      cvops serve                   # serve the champion (after `cvops models promote`)
      cvops run monitoring          # drift check of served traffic; retrains on drift
      cvops schedule                # monitoring and retraining on a schedule
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)  # only cvops's own logger: ZenML and MLflow configure theirs
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


@main.command()
@user_errors
def init() -> None:
    """Create the checkout's local state: ZenML repo and stack, MLflow store, DVC. Safe to re-run.

    \b
    Example:
      cvops init
    """
    from cvops.stack import init_project

    project = _project()
    for line in init_project(project, project.params()):
        click.echo(f"  {line}")
    click.secho("ready: next, `cvops data import elpv` (or digits)", fg="green")


@main.group()
def data() -> None:
    """Import, validate, prepare and version image datasets (the DVC stages)."""


@data.command("import")
@click.argument("source", required=False, type=click.Choice(SOURCES))
@click.option("--path", type=click.Path(path_type=Path), help="Input folder (folder, fashion-mnist).")
@click.option("--limit-per-class", type=click.IntRange(min=1), help="Import at most N images per class.")
@click.option("--direct", is_flag=True, help="Import now, outside DVC (what the DVC `import` stage runs).")
@user_errors
def import_(source: str | None, path: Path | None, limit_per_class: int | None, direct: bool) -> None:
    """Import SOURCE into data/raw/<class>/*.png with a manifest (the DVC `import` stage).

    SOURCE, --path and --limit-per-class are written into params.yaml (data.*), so DVC and the
    pipeline import the same thing; without them, params.yaml decides.

    \b
    Examples:
      cvops data import elpv
      cvops data import digits --limit-per-class 50
      cvops data import folder --path ~/images     # ~/images/<class>/<image>
    """
    project = _project()
    if direct:
        from cvops.data.manifest import import_source
        from cvops.data.sources import SOURCE_READERS

        params = project.params().data
        reader = SOURCE_READERS[params.source]
        manifest = import_source(
            reader(Path(params.path) if params.path else None, params.limit_per_class), project.raw_dir
        )
        counts = ", ".join(f"{label}: {n}" for label, n in manifest["label"].value_counts().sort_index().items())
        click.secho(
            f"imported {len(manifest)} images from {params.source} into {project.raw_dir} ({counts})", fg="green"
        )
        return
    from cvops.data.sources import SOURCE_READERS
    from cvops.data.versioning import reproduce

    if source in ("folder", "fashion-mnist"):
        SOURCE_READERS[source](path, limit_per_class)  # refuse a bad --path before params.yaml changes
    chosen = {"data.source": source, "data.path": path and str(path.expanduser().resolve()),
              "data.limit_per_class": limit_per_class}  # fmt: skip
    _set_params(
        project,
        [f"{k}={v}" for k, v in chosen.items() if v is not None] + (["data.path=null"] if source and not path else []),
    )
    reproduce(project, "import", force=True)


@data.command("validate")
@user_errors
def validate() -> None:
    """Check data/raw with the great-expectations suite and image checks (the DVC `validate` stage).

    Writes reports/validation.json and reports/validation.html. On failure prints each failed check
    with its files and exits 6 ("data invalid"); with validate.on_error=quarantine, bad files move to
    data/validated/quarantine and the rest must pass on its own.

    \b
    Example:
      cvops data validate && open reports/validation.html
    """
    from cvops.data.validation import validate_dataset, write_reports
    from cvops.errors import DataInvalidError

    project = _project()
    report = validate_dataset(project.raw_dir, project.validated_dir, project.params().validation)
    _, html_report = write_reports(report, project.reports_dir)
    click.echo(report.summary(), err=not report.passed)
    if not report.passed:
        raise DataInvalidError(f"data invalid: {len(report.failed_checks)} checks failed (report: {html_report})")


@data.command("prepare")
@user_errors
def prepare() -> None:
    """Split (seeded, stratified) and resize the validated images into data/prepared (the DVC `prepare` stage)."""
    from cvops.data.prepare import prepare_dataset

    project = _project()
    params = project.params()
    ref = prepare_dataset(
        project.validated_dir, project.raw_dir, project.prepared_dir, params.prepare, params.base.seed
    )
    sizes = ", ".join(f"{split}: {sum(c.values())}" for split, c in ref.counts.items())
    click.secho(f"prepared {sizes} images at {ref.image_size}px in {ref.prepared_dir}", fg="green")


@data.command("status")
@user_errors
def status() -> None:
    """Data version, images per class and split, and whether the workspace matches dvc.lock."""
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version, workspace_status

    project = _project()
    ref = load_dataset_ref(project.prepared_dir, data_version(project))
    click.echo(f"data version: {ref.data_version}  ({ref.image_size}px, classes: {', '.join(ref.class_names)})")
    width = max(len(c) for c in ref.class_names)
    click.echo(f"  {'class':<{width}}  " + "  ".join(f"{s:>6}" for s in ref.counts))
    for name in ref.class_names:
        click.echo(f"  {name:<{width}}  " + "  ".join(f"{ref.counts[s].get(name, 0):>6}" for s in ref.counts))
    changes = workspace_status(project)
    if changes:
        click.secho(f"workspace differs from dvc.lock: {changes}; run `dvc repro` or `cvops run training`", fg="yellow")
    else:
        click.secho("workspace matches dvc.lock", fg="green")


@data.command("push")
@user_errors
def push() -> None:
    """Upload the DVC-tracked data to the remote (params data.remote)."""
    from cvops.data.versioning import push as dvc_push

    sent = dvc_push(_project())
    click.secho(f"pushed {sent} objects", fg="green")


@data.command("pull")
@user_errors
def pull() -> None:
    """Restore the data that dvc.lock names from the remote (params data.remote)."""
    from cvops.data.versioning import pull as dvc_pull

    result = dvc_pull(_project())
    click.secho(f"pulled: {result.get('stats', result)}", fg="green")


@main.group()
def run() -> None:
    """Run a ZenML pipeline on the active stack."""


@run.command("training")
@click.option("-S", "--set", "overrides", multiple=True, help=OVERRIDE_HELP)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch checkpoint.")
@user_errors
def run_training(overrides: tuple[str, ...], resume: bool) -> None:
    """Validate and prepare the data (DVC), train, evaluate, gate and register a model: the `training` pipeline.

    A version that passes the gate (params.yaml: gate) is registered as `challenger` with approval=pending;
    one that fails is registered with its evidence but no alias, and the command exits 7.
    -S values are written into params.yaml first (as `dvc exp run -S` does), so DVC's data stages,
    the pipeline and `git diff` all see them.

    \b
    Examples:
      cvops run training
      cvops run training -S train.epochs=3 -S train.lr=3e-4
      cvops run training --resume        # after an interruption, same params
    """
    from cvops.scheduler import launch_training
    from cvops.stack import ensure_initialized

    project = _project()
    ensure_initialized(project)
    params = _set_params(project, list(overrides))
    result = launch_training(project, params, resume)
    if result is None:  # only when a remote orchestrator runs it asynchronously
        click.echo("pipeline submitted; follow it with `zenml pipeline runs list`")
        return
    evaluation, decision, quantization = result.evaluation, result.decision, result.quantization
    version, trained = result.version, result.trained
    metrics = evaluation.metrics
    click.echo(f"\n{quantization.summary()}\n\n{decision.table()}")
    click.secho(f"\ntest accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}", fg="green", bold=True)
    click.echo(f"MLflow run:       {trained.run_id} (experiment '{params.mlflow.experiment}')")
    click.echo(f"ZenML run:        {result.run_name}")
    registry = _registry(project, params)
    info = registry.get(version)
    click.echo(f"registered model: {registry.name} version {version} [{', '.join(info.aliases) or 'no alias'}]")
    click.echo(f"model card:       {info.tags.get('model_card', '')}")
    if info.tags.get("bento"):
        click.echo(f"bento:            {info.tags['bento']} (`cvops serve --version {version}` or infra/README.md)")
    if not decision.passed:
        raise GateFailedError(
            f"version {version} failed its gate ({'; '.join(c.name for c in decision.failed)}): not a challenger; "
            f"evidence: `cvops models show {version}`"
        )
    if "champion" in info.aliases:
        click.secho(f"version {version} is the champion (registry.require_approval is false)", fg="green")
    else:
        click.echo(f"next: review with `cvops models show {version}`, then "
                   f"`cvops models promote {version} --reviewer NAME` (or reject)")  # fmt: skip


@run.command("batch-inference")
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path), help="Folder of images to score.")
@click.option("--output", type=click.Path(path_type=Path), help="Predictions file, .parquet or .csv "
              "(default: reports/predictions-<time>.parquet).")  # fmt: skip
@click.option("--version", "version", help="Score with this version instead of the champion.")
@user_errors
def run_batch_inference(input_dir: Path, output: Path | None, version: str | None) -> None:
    """Score a folder with the champion: the `batch_inference` pipeline.

    Writes path, label, score and model version per file (unreadable files get an error instead),
    logs counts to MLflow and appends every scored image to the inference log.

    \b
    Examples:
      cvops run batch-inference --input incoming/
      cvops run batch-inference --input incoming/ --output scored.csv --version 3
    """
    import time

    from cvops.errors import DataError
    from cvops.serving.source import resolve
    from cvops.stack import ensure_initialized

    project = _project()
    ensure_initialized(project)
    params = project.params()
    if not input_dir.is_dir():
        raise DataError(f"input folder {input_dir} does not exist")
    selector = version or "champion"
    resolve(_registry(project, params), selector, project.bentoml_home / "onnx")  # a missing champion fails here
    output = (output or project.reports_dir / f"predictions-{time.strftime('%Y%m%d-%H%M%S')}.parquet").resolve()

    from cvops.scheduler import step_error, tracker_settings
    from pipelines.batch_inference import batch_inference

    try:
        pipeline_run = batch_inference.with_options(settings=tracker_settings(params.mlflow.experiment))(
            input_dir=str(input_dir.resolve()), output=str(output), selector=selector, params=params
        )
    except RuntimeError as err:
        raise step_error(err) from err
    if pipeline_run is None:
        click.echo("pipeline submitted; follow it with `zenml pipeline runs list`")
        return
    counts = pipeline_run.steps["batch_predict"].outputs["counts"][0].load()
    click.secho(f"scored {counts['scored']} of {counts['images']} files -> {output}", fg="green")
    if counts["unreadable"]:
        click.secho(f"{counts['unreadable']} files could not be read: see the error column", fg="yellow")


def _since(value: str | None) -> "datetime | None":
    """An ISO time (UTC unless it says otherwise) or an age: 90m, 6h, 2d."""
    from datetime import UTC, datetime, timedelta

    if value is None:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: float(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value!r}: give an ISO time (2026-11-22T08:00) or an age (90m, 6h, 2d)") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@run.command("monitoring")
@click.option("--window", type=click.IntRange(min=1), help="Check the newest N logged predictions (default: "
              "params monitor.window).")  # fmt: skip
@click.option("--since", help="Check the predictions since a time (ISO, UTC) or for an age: 90m, 6h, 2d.")
@click.option("--no-retrain", is_flag=True, help="Alert on drift, but do not start a retraining.")
@user_errors
def run_monitoring(window: int | None, since: str | None, no_retrain: bool) -> None:
    """Check served traffic for drift against the champion's reference: the `monitoring` pipeline.

    Reads the inference log, runs Evidently's drift tests (image statistics, embeddings, predictions),
    writes HTML and JSON reports under reports/monitoring/ and to MLflow, and prints the verdict.
    On drift it alerts (log line, webhook) and starts one retraining per drift episode, outside the
    cooldown (params.yaml: monitor); every decision is appended to monitoring/triggers.jsonl.

    \b
    Examples:
      cvops run monitoring
      cvops run monitoring --window 200
      cvops run monitoring --since 6h --no-retrain
    """
    if window and since:
        raise ConfigError("give --window or --since, not both")
    start = _since(since)
    from cvops.scheduler import monitor
    from cvops.stack import ensure_initialized

    project = _project()
    ensure_initialized(project)
    params = project.params()
    _registry(project, params)  # the MLflow store, for the champion
    result = monitor(project, params, window=window, since=start, retrain=not no_retrain)
    if result is None:
        click.echo("pipeline submitted; follow it with `zenml pipeline runs list`")
        return
    verdict = result.verdict
    if verdict.columns:
        click.echo(verdict.table())
    colour = {"drift": "red", "no_drift": "green", "not_enough_data": "yellow"}[verdict.status]
    click.secho(f"\n{verdict.status.replace('_', ' ').upper()}: {verdict.reason}", fg=colour, bold=True)
    click.echo(f"window: {verdict.rows} predictions ({verdict.model_rows} by champion version {verdict.model_version})")
    if verdict.report_dir:
        click.echo(f"report: {verdict.report_dir}")
    decision = result.decision
    if decision is not None:
        click.echo(
            f"episode {decision.episode}: {decision.action}" + (f" ({decision.outcome})" if decision.outcome else "")
        )
    if result.training is not None:
        click.echo(f"retraining run {result.training.run_name}: version {result.training.version} "
                   f"({'passed' if result.training.decision.passed else 'failed'} its gate)")  # fmt: skip


@main.command()
@click.option("--once", is_flag=True, help="Run the jobs that are due, then exit (for cron or systemd timers).")
@click.option("--remote", is_flag=True, help="Register schedule.training_cron with the active stack's orchestrator.")
@user_errors
def schedule(once: bool, remote: bool) -> None:
    """Run monitoring and training on their schedules (params.yaml: schedule) with a local scheduler.

    Jobs and their next run times persist in monitoring/scheduler.sqlite. A pipeline never runs twice at
    once (a due job whose pipeline is running is skipped and stays due). SIGTERM stops the scheduler
    after the running job finishes.

    \b
    Examples:
      cvops schedule                                  # runs until SIGTERM / Ctrl-C
      cvops schedule --once                           # from cron: */15 * * * * cd /repo && cvops schedule --once
      cvops run training -S schedule.training_cron="0 3 * * 0"   # then: cvops schedule
      cvops schedule --remote                         # on a Kubernetes/Kubeflow/Airflow stack
    """
    from cvops.scheduler import run_due, schedule_remote, serve_schedule
    from cvops.stack import ensure_initialized

    project = _project()
    ensure_initialized(project)
    params = project.params()
    if remote:
        click.secho(schedule_remote(params), fg="green")
    elif once:
        for job, outcome in run_due(project, params):
            click.echo(f"{job}: {outcome}")
    else:
        serve_schedule(project, params)


@main.command()
@click.option("--source", "split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Dataset split the images come from (their original files).")  # fmt: skip
@click.option("--shift", type=click.Choice(SHIFTS), default="none", show_default=True, help="Distribution shift.")
@click.option("--severity", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Size of the shift (0.3: 30% brighter, see cvops/monitoring/shifts.py).")  # fmt: skip
@click.option("--n", "count", type=click.IntRange(min=1), default=200, show_default=True, help="Images to send.")
@click.option("--offline", is_flag=True, help="Score in this process with the champion, straight into the "
              "inference log (no service needed).")  # fmt: skip
@click.option("--url", help="Service URL (default: http://127.0.0.1:<serve.port>).")
@click.option("--seed", type=int, help="Seed of the image draw and the noise (default: base.seed).")
@user_errors
def traffic(split: str, shift: str, severity: float, count: int, offline: bool, url: str | None,
            seed: int | None) -> None:  # fmt: skip
    """Send demo traffic to the served model, shifted or not, to watch monitoring react.

    \b
    Examples:
      cvops traffic --shift none --n 300              # to `cvops serve`; then `cvops run monitoring`: no drift
      cvops traffic --shift brightness --n 300        # then `cvops run monitoring`: drift, one retraining
      cvops traffic --shift blur --n 200 --offline    # no service: straight into the inference log
    """
    import os

    from cvops.data.prepare import load_dataset_ref
    from cvops.monitoring.traffic import log_offline, send, traffic_images

    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {url!r}: give the service's URL, e.g. http://127.0.0.1:3000")
    project = _project()
    params = project.params()
    images = traffic_images(load_dataset_ref(project.prepared_dir), project.raw_dir, split, shift, severity, count,
                            params.base.seed if seed is None else seed)  # fmt: skip
    if offline:
        from cvops.monitoring.inference_log import InferenceLog
        from cvops.serving.predictor import Predictor
        from cvops.serving.source import resolve

        served = resolve(_registry(project, params), "champion", project.bentoml_home / "onnx")
        inference_log = InferenceLog(project.root / params.serve.inference_log)
        written = log_offline(Predictor.of(served), images, count, inference_log, params.serve.max_image_pixels)
        inference_log.close()
        click.secho(f"{written} {shift} images scored by version {served.version} into the inference log", fg="green")
        return
    url = url or f"http://127.0.0.1:{params.serve.port}"
    statuses = send(url, images, count, token=os.environ.get("CVOPS_API_TOKEN"))
    summary = ", ".join(f"{n} x {status or 'no answer'}" for status, n in sorted(statuses.items()))
    click.echo(f"sent {count} {shift} images to {url}: {summary}")
    if statuses.get(0) == count:
        raise ServiceUnavailable(f"no answer from {url}: start the service with `cvops serve`, or use --offline")


@main.group()
def models() -> None:
    """Review registered versions: evidence, promotion with approval, rejection, rollback.

    \b
    Aliases: champion (served), challenger (newest passing version), previous (for rollback).
    Example review:
      cvops models list
      cvops models show 3
      cvops models promote 3 --reviewer alice --note "beats v2 on poly cells"
      cvops models rollback --reviewer bob --reason "false rejects in production"
    """


def _version_notes(registry: "ModelRegistry", info: "VersionInfo") -> str:
    from cvops.registry import OUTSIDE_CVOPS

    notes = []
    if registry.outside_cvops(info):
        notes.append(OUTSIDE_CVOPS)
    if info.tags.get("gate_override") == "true":
        notes.append("gate overridden")
    if "rolled_back_by" in info.tags:
        notes.append(f"rolled back by {info.tags['rolled_back_by']}")
    if "retrain_trigger" in info.tags:
        notes.append(f"retrained on drift {info.tags['retrain_trigger']}")
    return "; ".join(notes)


@models.command("list")
@user_errors
def models_list() -> None:
    """Every version, newest first: aliases, metrics, gate verdict, approval, data version, created."""
    registry = _registry(_project())
    versions = registry.versions()
    if not versions:
        click.echo(f"{registry.name} has no versions yet: run `cvops run training`")
        return
    click.echo(f"{'version':>7}  {'aliases':<20} {'accuracy':>8} {'macro_f1':>8}  {'gate':<6}  {'approval':<8}  "
               f"{'data':<8}  {'created (UTC)':<16}  notes")  # fmt: skip
    for info in versions:
        line = (
            f"{info.version:>7}  {','.join(info.aliases):<20} {info.tags.get('accuracy', '—'):>8} "
            f"{info.tags.get('macro_f1', '—'):>8}  {info.gate:<6}  {info.approval:<8}  "
            f"{info.tags.get('data_version', '')[:8]:<8}  {info.created:%Y-%m-%d %H:%M}  "
            f"{_version_notes(registry, info)}"
        )
        click.secho(line, fg="yellow" if registry.outside_cvops(info) else None)


def _show(registry: "ModelRegistry", version: str) -> None:
    from cvops.evidence import load_evidence

    info = registry.get(version)
    click.secho(f"{registry.name} version {info.version}  [{', '.join(info.aliases) or 'no alias'}]", bold=True)
    click.echo(f"  {info.description}")
    click.echo(f"  gate {info.gate}, approval {info.approval}, created {info.created:%Y-%m-%d %H:%M} UTC")
    for key in ("approved_by", "approved_at", "approval_note", "rejected_by", "rejected_at", "gate_override",
                "rolled_back_by", "rolled_back_at", "rollback_reason", "git_commit", "git_dirty", "data_version",
                "params_hash", "zenml_run_id", "shipped_format"):  # fmt: skip
        if info.tags.get(key):
            click.echo(f"  {key + ':':<16} {info.tags[key]}")
    if notes := _version_notes(registry, info):
        click.secho(f"  note: {notes}", fg="yellow")
    evaluation, gate, quantization = load_evidence(info.run_id)
    click.secho("\ngate", bold=True)
    click.echo(gate.table())
    click.secho("\ndeployment artifact (ONNX)", bold=True)
    if quantization is None:
        click.echo(f"  not exported: `cvops quantize --version {version}`")
    else:
        click.echo("  " + quantization.summary().replace("\n", "\n  "))
        click.echo(f"  shipped file: {info.tags.get('onnx_shipped', '?')}")
    click.secho("\nchampion comparison (same test images)", bold=True)
    comparison = evaluation.champion
    click.echo(f"  {comparison.describe() if comparison else 'no champion when this version was evaluated'}")
    click.secho("\nslices", bold=True)
    for piece in evaluation.slices:
        click.echo(f"  {piece.attribute + '=' + piece.value:<24} n={piece.n:<6} accuracy {piece.accuracy:.4f}  "
                   f"macro-F1 {piece.macro_f1:.4f}")  # fmt: skip
    click.echo(f"\nmodel card: {info.tags.get('model_card', 'none')}")


@models.command("show")
@click.argument("version")
@user_errors
def models_show(version: str) -> None:
    """The evidence for VERSION: gate table, champion comparison, slices, approval record, model card.

    \b
    Example:
      cvops models show 3
    """
    _show(_registry(_project()), version)


@models.command("review")
@user_errors
def models_review() -> None:
    """Show the evidence for the current challenger (the version waiting for a reviewer)."""
    from cvops.errors import RegistryError
    from cvops.registry import CHALLENGER

    registry = _registry(_project())
    challenger = registry.alias(CHALLENGER)
    if challenger is None:
        raise RegistryError(f"{registry.name} has no challenger waiting for review; `cvops models list` shows all")
    _show(registry, challenger.version)
    click.echo(f"\ndecide: `cvops models promote {challenger.version} --reviewer NAME [--note TEXT]` "
               f"or `cvops models reject {challenger.version} --reviewer NAME --reason TEXT`")  # fmt: skip


@models.command("promote")
@click.argument("version")
@click.option("--reviewer", required=True, help="Who approves (recorded as approved_by).")
@click.option("--note", default="", help="Why (recorded as approval_note); required with --override.")
@click.option("--override", is_flag=True, help="Promote although the gate failed (needs --note).")
@user_errors
def models_promote(version: str, reviewer: str, note: str, override: bool) -> None:
    """Make VERSION the champion (served); the old champion becomes `previous`.

    \b
    Examples:
      cvops models promote 3 --reviewer alice --note "better on poly cells"
      cvops models promote 4 --reviewer alice --override --note "latency budget waived for the pilot"
    """
    registry = _registry(_project())
    old = registry.promote(version, reviewer, note, override)
    click.secho(f"version {version} is the champion (approved by {reviewer})", fg="green")
    if old is not None:
        click.echo(f"version {old.version} is `previous`: `cvops models rollback` restores it")


@models.command("reject")
@click.argument("version")
@click.option("--reviewer", required=True, help="Who rejects (recorded as rejected_by).")
@click.option("--reason", required=True, help="Why (recorded as approval_note).")
@user_errors
def models_reject(version: str, reviewer: str, reason: str) -> None:
    """Reject VERSION: it loses its alias and can never be promoted.

    \b
    Example:
      cvops models reject 4 --reviewer alice --reason "misses cracks on poly cells"
    """
    _registry(_project()).reject(version, reviewer, reason)
    click.secho(f"version {version} rejected by {reviewer}", fg="yellow")


@models.command("rollback")
@click.option("--reviewer", required=True, help="Who rolls back (recorded on both versions).")
@click.option("--reason", required=True, help="Why (recorded on both versions).")
@user_errors
def models_rollback(reviewer: str, reason: str) -> None:
    """Give `champion` back to the `previous` version, recording who and why.

    \b
    Example:
      cvops models rollback --reviewer bob --reason "false alarms since the promotion"
    """
    restored, demoted = _registry(_project()).rollback(reviewer, reason)
    click.secho(f"rolled back: version {restored.version} is the champion again (was {demoted.version})", fg="green")


@main.command()
@click.option("--version", "version", required=True, help="Registered model version to export and quantize.")
@click.option(
    "-S",
    "--set",
    "overrides",
    multiple=True,
    help="Override a quantize.* parameter, e.g. -S quantize.calibration_size=128.",
)
@user_errors
def quantize(version: str, overrides: tuple[str, ...]) -> None:
    """Export VERSION to ONNX fp32 and int8, measure both here, record which one ships, and rebuild the
    version's monitoring reference with it.

    What the pipeline's quantize_model step does, for a version registered earlier or to try other
    quantize.* settings. The version's gate is decided again with the new shipped artifact.

    \b
    Examples:
      cvops quantize --version 3
      cvops quantize --version 3 -S quantize.calibration_method=percentile
    """
    import mlflow

    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version
    from cvops.errors import DataError
    from cvops.evidence import (
        load_evidence,
        log_gate_decision,
        log_quantization,
        log_reference,
        quantization_tags,
        reference_tags,
    )
    from cvops.gate import decide
    from cvops.monitoring.reference import build_reference
    from cvops.quantization import quantize as quantize_model
    from cvops.registry import MODEL_INFO_TAG
    from cvops.serving.source import forget
    from cvops.tracking import TrainedModel, load_trained_model, scratch_dir

    project = _project()
    params = _set_params(project, list(overrides))
    registry = _registry(project, params)
    info = registry.get(version)
    ref = load_dataset_ref(project.prepared_dir, data_version(project))
    if info.tags.get("data_version") and info.tags["data_version"] != ref.data_version:
        raise DataError(
            f"version {version} was trained on data {info.tags['data_version'][:8]}, the checkout holds "
            f"{ref.data_version[:8] or 'unversioned data'}: check out its commit and run `dvc checkout` first"
        )
    trained = TrainedModel.model_validate_json(info.tags[MODEL_INFO_TAG])
    report = quantize_model(load_trained_model(trained), ref, scratch_dir(), params.quantize, params.base.seed)
    reference = build_reference(Path(report.shipped_artifact.path), ref, scratch_dir() / "reference",
                                params.monitor.embedding_dims)  # fmt: skip
    evaluation, before, _ = load_evidence(info.run_id)
    decision = decide(evaluation, params.gate, report)
    with mlflow.start_run(run_id=info.run_id) as run:
        log_quantization(report)
        log_reference(reference)
        log_gate_decision(decision)
    tags = quantization_tags(report, run.info.artifact_uri) | reference_tags(run.info.artifact_uri, reference)
    registry.tag(version, tags)
    if "onnx_int8" not in tags and "onnx_int8" in info.tags:  # int8 switched off: no stale link
        registry.client.delete_model_version_tag(registry.name, version, "onnx_int8")
    registry.record_gate(version, decision)
    forget(project.bentoml_home / "onnx", version)  # served and monitored from the new files from now on
    click.echo(report.summary())
    click.echo(decision.table())
    if before.passed != decision.passed:
        click.secho(f"the gate verdict changed: {'passed' if decision.passed else 'failed'} now", fg="yellow")


@main.command()
@click.option("--version", "version", required=True, help="Registered model version to package.")
@user_errors
def package(version: str) -> None:
    """Put VERSION's shipped ONNX model into BentoML's store and build a bento that serves it offline.

    \b
    Examples:
      cvops package --version 3
      bentoml containerize cvops-classifier:latest    # on a machine with a Docker engine (see infra/)
    """
    from cvops.serving.packaging import build_bento, store_model
    from cvops.serving.source import resolve

    project = _project()
    registry = _registry(project)
    served = resolve(registry, version, project.bentoml_home / "onnx")
    info = registry.get(served.version)
    model_tag = store_model(served, info.tags)
    bento_tag = build_bento(model_tag, served.version)
    registry.tag(served.version, {"bento": bento_tag, "bentoml_model": model_tag})
    click.secho(f"packaged version {served.version}: model {model_tag}, bento {bento_tag}", fg="green")
    click.echo(f"serve it: BENTOML_HOME={project.bentoml_home} CVOPS_BENTO_MODEL={model_tag} bentoml serve {bento_tag}")


@main.command()
@click.option("--version", "version", help="Serve this registered version (pinned).")
@click.option(
    "--alias", default="champion", show_default=True, help="Serve the version this alias names, and follow it."
)
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: params serve.port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@user_errors
def serve(version: str | None, alias: str, port: int | None, host: str) -> None:
    """Serve a model over HTTP with BentoML: POST /classify, /classify_batch; GET /healthz, /readyz, /metrics.

    With an alias (default: champion) the service checks the registry every serve.poll_seconds and
    swaps in a newly promoted version without downtime. Set CVOPS_API_TOKEN to require a bearer token.

    \b
    Examples:
      cvops serve                                   # the champion, on serve.port
      cvops serve --version 3 --port 3001
      curl -F image=@cell.png http://127.0.0.1:3000/classify
    """
    import os

    from cvops.serving.source import resolve

    project = _project()
    params = project.params()
    selector = version or alias
    served = resolve(
        _registry(project, params), selector, project.bentoml_home / "onnx"
    )  # fail here, not in the server
    port = port or params.serve.port
    click.echo(
        f"serving {served.model_name} version {served.version} ({selector}) on http://{host}:{port} (Ctrl-C stops it)"
    )
    env = {**os.environ, "CVOPS_SERVE_MODEL": selector}
    command = [sys.executable, "-m", "bentoml", "serve", "cvops.serving.service:Classifier", "--host", host,
               "--port", str(port)]  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command, env=env, check=False)


@main.command()
@click.option("--port", default=5000, show_default=True, help="Port on 127.0.0.1.")
@user_errors
def ui(port: int) -> None:
    """Start the MLflow UI on 127.0.0.1 over the checkout's tracking store.

    \b
    Example:
      cvops ui --port 5001     # then open http://127.0.0.1:5001
    """
    from cvops.stack import ensure_initialized

    project = _project()
    ensure_initialized(project)
    click.echo(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C stops it)")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", project.tracking_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command, check=False)


if __name__ == "__main__":
    main()
