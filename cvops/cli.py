"""The `cvops` command line: the entry layer that sets up the process and launches pipelines."""

import contextlib
import logging
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from cvops.config import SOURCES, Params, Project
from cvops.errors import CvopsError

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
    """Validate and prepare the data (DVC), train, evaluate and register a model: the `training` pipeline.

    -S values are written into params.yaml first (as `dvc exp run -S` does), so DVC's data stages,
    the pipeline and `git diff` all see them.

    \b
    Examples:
      cvops run training
      cvops run training -S train.epochs=3 -S train.lr=3e-4
      cvops run training --resume        # after an interruption, same params
    """
    from cvops.stack import ensure_initialized

    project = _project()
    ensure_initialized(project)
    params = _set_params(project, list(overrides))

    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerSettings

    from cvops.data.versioning import reproduce
    from cvops.tracking import use_project_store
    from pipelines.training import training

    # The data stages first, here: invalid data stops the run with its summary before any step starts.
    # The pipeline's data steps then find DVC up to date and only record the data version.
    reproduce(project, "prepare")
    use_project_store(project, params.mlflow.experiment)  # creates it with its artifact location under mlflow/
    tracker = MLFlowExperimentTrackerSettings(experiment_name=params.mlflow.experiment, nested=False)
    try:
        pipeline_run = training.with_options(settings={"experiment_tracker": tracker})(params=params, resume=resume)
    except RuntimeError as err:
        raise _step_error(err) from err
    if pipeline_run is None:  # only when a remote orchestrator runs it asynchronously
        click.echo("pipeline submitted; follow it with `zenml pipeline runs list`")
        return
    metrics = pipeline_run.steps["evaluate_model"].outputs["test_metrics"][0].load()
    version = pipeline_run.steps["register_model"].outputs["model_version"][0].load()
    trained = pipeline_run.steps["train_model"].outputs["trained_model"][0].load()
    click.secho(f"\ntest accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}", fg="green", bold=True)
    click.echo(f"MLflow run:       {trained.run_id} (experiment '{params.mlflow.experiment}')")
    click.echo(f"registered model: {params.registry.model_name} version {version}")
    click.echo(f"ZenML run:        {pipeline_run.name}")
    click.echo(f"next: `cvops ui` to compare runs (Experiments > cvops; Models > {params.registry.model_name})")


def _step_error(failure: RuntimeError) -> Exception:
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
