"""`cvops run ...`: the ZenML pipelines (training, batch inference, monitoring)."""

import time
from datetime import datetime
from pathlib import Path

import click

from cvops.cli import render
from cvops.cli.app import OVERRIDE_HELP, Since, initialized_project, main, registry
from cvops.env import OVERLAY_ENV
from cvops.errors import ConfigError, GateFailedError


@main.group()
def run() -> None:
    """Run a ZenML pipeline on the active stack."""


@run.command("training")
@click.option("-S", "--set", "overrides", multiple=True, help=OVERRIDE_HELP)
@click.option(
    "--overlay",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar=OVERLAY_ENV,
    show_envvar=True,
    help="A params overlay (YAML with some of params.yaml's keys) for this run only; -S values apply after it.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch checkpoint.")
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A ZenML run configuration: step resources, GPUs, node selectors for a remote orchestrator "
    "(e.g. infra/kubernetes/training.yaml).",
)
def run_training(overrides: tuple[str, ...], overlay: Path | None, resume: bool, config: Path | None) -> None:
    """Validate and prepare the data (DVC), train, evaluate, gate and register a model: the `training` pipeline.

    A version that passes the gate (params.yaml: gate) is registered as `challenger` with approval=pending;
    one that fails is registered with its evidence but no alias, and the command exits 7.
    -S values and an --overlay are for this run only: written into params.yaml while it lasts (DVC's data
    stages read them there), then params.yaml is restored; the run records them as its `overrides` tag.
    `cvops params set` changes params.yaml itself. The values that differ from the committed params.yaml are
    printed before the run starts.

    \b
    Examples:
      cvops run training
      cvops run training -S train.epochs=3 -S train.lr=3e-4   # this run only; params.yaml unchanged after
      cvops run training --overlay overlays/digits.yaml     # the small digits run; params.yaml unchanged after
      CVOPS_OVERLAY=overlays/quick.yaml cvops run training  # the same, for every run of a shell or a CI job
      cvops run training --resume        # after an interruption, same params
      cvops run training -S distill.enabled=true   # then a smaller student distilled from it, its own version
      cvops run training --config infra/kubernetes/training.yaml   # on the Kubernetes stack
    """
    from cvops.cli.launch import train, training_lock
    from cvops.registry.lineage import committed_differences

    checkout = initialized_project()
    with training_lock(checkout), checkout.overlaid(overlay, list(overrides)) as params:
        render.committed_params_diff(committed_differences(checkout.root, params))
        result = train(checkout, params, resume, config=config)
    if result is None:
        return render.submitted()
    render.training(result, params.mlflow.experiment, registry(checkout, params).reviewer_option())
    if not result.decision.passed:
        raise GateFailedError(
            f"version {result.version} failed its gate ({'; '.join(c.name for c in result.decision.failed)}): "
            f"not a challenger; evidence: `cvops models show {result.version}`"
        )


@run.command("batch-inference")
@click.option(
    "--input",
    "input_value",
    required=True,
    metavar="DIR|s3://BUCKET/PREFIX",
    help="Folder of images to score, or an S3 prefix (keys from the AWS_* variables).",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Predictions file, .parquet or .csv (default: reports/predictions-<time>.parquet).",
)
@click.option(
    "--version",
    "version",
    help="Score with this version (a number, or an alias: challenger, previous), not the champion.",
)
@click.option(
    "--overlay",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A params overlay for this run only, e.g. a `distributed` section that sends the scoring to "
    "a Ray cluster (infra/kubernetes/ray/distributed.yaml).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A ZenML run configuration for a remote orchestrator (e.g. infra/kubernetes/ray/driver.yaml).",
)
def run_batch_inference(
    input_value: str, output: Path | None, version: str | None, overlay: Path | None, config: Path | None
) -> None:
    """Score a folder (or an S3 prefix) with the champion: the `batch_inference` pipeline.

    Writes path, label, score and model version per file (unreadable files get an error instead); a
    detector's file has a row per box (label, score, x1 y1 x2 y2 in the image's pixels) and one row without a
    box for an image with none. Logs counts to MLflow and appends every scored image to the inference log.
    With `distributed.engine: ray` in params.yaml, a pool of `distributed.batch_workers` Ray actors scores
    the files (Ray Data), on a Ray instance started for the command or on the cluster at
    `distributed.address`; the output is the same.

    \b
    Examples:
      cvops run batch-inference --input incoming/
      cvops run batch-inference --input incoming/ --output scored.csv --version 3
      cvops run batch-inference --input incoming/ --version challenger    # the version waiting for review
      cvops run batch-inference --input s3://cvops/incoming/2026-12-01/
      cvops run batch-inference --input /shared/incoming --overlay infra/kubernetes/ray/distributed.yaml
    """
    from cvops.cli.launch import launch_batch_inference
    from cvops.registry.model_registry import CHAMPION

    checkout = initialized_project()
    output = output or checkout.reports_dir / f"predictions-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    with checkout.overlaid(overlay) as params:
        counts = launch_batch_inference(checkout, params, input_value, output, version or CHAMPION, config)
    if counts is None:
        return render.submitted()
    boxes = f" ({counts['boxes']} boxes)" if "boxes" in counts else ""
    click.secho(f"scored {counts['scored']} of {counts['images']} files{boxes} -> {output.resolve()}", fg="green")
    if counts["unreadable"]:
        click.secho(f"{counts['unreadable']} files could not be read: see the error column", fg="yellow")


@run.command("video")
@click.argument("location", metavar="VIDEO|DIR|URL")
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the outputs, one folder per video (default: reports/video-<time>/).",
)
@click.option(
    "--version",
    "version",
    help="Run this version (a number, or an alias: challenger, previous), not the champion.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Watch a live source for this long (default: until it ends or the job is stopped).",
)
@click.option(
    "--overlay",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A params overlay for this run only, e.g. a camera's `video.zones`.",
)
@click.option("-S", "--set", "overrides", multiple=True, help=OVERRIDE_HELP)
def run_video(
    location: str,
    output: Path | None,
    version: str | None,
    duration: float | None,
    overlay: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Run a video file, the videos of a folder or an s3:// prefix, or a live stream through the champion.

    A detector's boxes are tracked (ByteTrack), so that each object keeps one id from frame to frame, and
    counted across `video.zones`; a classifier's labels are averaged over `video.smoothing_seconds` and joined
    into segments. For each video, a folder of its own holds annotated.mp4 (boxes, labels and track ids drawn;
    it plays up to the last frame written, also when the job was stopped), frames.jsonl (a line per frame),
    tracks.csv and zones.csv (a detector) or segments.csv (a classifier), and summary.json, written last
    (`complete: false` and why, when the job or the file ended early). A live source (rtsp://, http(s)://, a
    camera such as /dev/video0) is answered as it comes: the frames the machine cannot keep up with are dropped
    and counted, and a stream that drops is opened again (`video.reconnect`). A share of the frames
    (`video.log_fraction`) goes to the inference log, so drift monitoring sees the video traffic; the counts go
    to MLflow. The `video` pipeline.

    \b
    Examples:
      cvops run video line-3.mp4
      cvops run video recordings/ --output reports/recordings
      cvops run video s3://cvops/recordings/2026-12-07/       # keys from the AWS_* variables
      cvops run video rtsp://cam-3:8554/line --duration 3600 --overlay overlays/cam-3.yaml
      cvops run video line-3.mp4 -S video.fps_budget=30     # as if live at 30 frames a second
      cvops run video line-3.mp4 --version challenger       # the version waiting for review
      cvops run video line-3.mp4 -S video.annotate=false    # the tables only, no annotated.mp4
    """
    from cvops.cli.launch import launch_video
    from cvops.registry.model_registry import CHAMPION

    checkout = initialized_project()
    output = output or checkout.reports_dir / f"video-{time.strftime('%Y%m%d-%H%M%S')}"
    with checkout.overlaid(overlay, list(overrides)) as params:
        counts = launch_video(checkout, params, location, output, version or CHAMPION, duration)
    tracks = f", {counts['tracks']} tracks" if "tracks" in counts else ""
    done = counts["videos"] - counts["unreadable"]
    click.secho(
        f"{done} of {counts['videos']} videos, {counts['frames']} frames{tracks} -> {output.resolve()}", fg="green"
    )
    for result in counts["results"]:
        if "error" in result:
            click.secho(f"  could not read: {result['error']}", fg="yellow")
        elif not result["complete"]:
            click.secho(f"  {result['video']}: {result['stopped']}", fg="yellow")
        if result.get("frames_dropped"):
            click.secho(
                f"  {result['video']}: {result['frames_dropped']} of {result['frames_received']} frames dropped "
                f"to keep up (answers {result['answer_age_ms_p99']} ms old at p99)",
                fg="yellow",
            )


@run.command("monitoring")
@click.option(
    "--window",
    type=click.IntRange(min=1),
    help="Check the newest N logged predictions (default: params monitor.window).",
)
@click.option("--since", type=Since(), help="Check the predictions since a time (ISO, UTC) or for an age: 90m, 6h, 2d.")
@click.option("--no-retrain", is_flag=True, help="Alert on drift, but do not start a retraining.")
def run_monitoring(window: int | None, since: datetime | None, no_retrain: bool) -> None:
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
    from cvops.cli.scheduler import monitor

    if window and since:
        raise ConfigError("give --window or --since, not both")
    checkout = initialized_project()
    result = monitor(checkout, checkout.params(), window=window, since=since, retrain=not no_retrain)
    if result is None:
        return render.submitted()
    render.monitoring(result)
