"""`cvops schedule` and `cvops traffic`: the pipelines on their schedules, and demo traffic to watch them."""

from pathlib import Path
from typing import Any

import click

from cvops.cli.app import initialized_project, main, project
from cvops.config import HOLDOUT
from cvops.errors import ConfigError
from cvops.monitoring.shifts import SHIFTS


@main.command()
@click.option("--once", is_flag=True, help="Run the jobs that are due, then exit (for cron or systemd timers).")
@click.option("--remote", is_flag=True, help="Register schedule.training_cron with the active stack's orchestrator.")
def schedule(once: bool, remote: bool) -> None:
    """Run monitoring and training on their schedules (params.yaml: schedule) with a local scheduler.

    Jobs and their next run times persist in monitoring/scheduler.sqlite, or in the team's state database
    (CVOPS_STATE_URL). A pipeline never runs twice at once, on any host sharing that state (a due job whose
    pipeline is running is skipped and stays due). SIGTERM stops the scheduler
    after the running job finishes.

    \b
    Examples:
      cvops schedule                                  # runs until SIGTERM / Ctrl-C
      cvops schedule --once                           # from cron: */15 * * * * cd /repo && cvops schedule --once
      cvops params set "schedule.training_cron=0 3 * * 0"   # then: cvops schedule
      cvops schedule --remote                         # on a Kubernetes/Kubeflow/Airflow stack
    """
    from cvops.cli.scheduler import run_due, schedule_remote, serve_schedule

    checkout = initialized_project()
    params = checkout.params()
    if remote:
        click.secho(schedule_remote(params), fg="green")
    elif once:
        for job, outcome in run_due(checkout, params):
            click.echo(f"{job}: {outcome}")
    else:
        serve_schedule(checkout, params)


@main.command()
@click.option(
    "--source",
    "split",
    type=click.Choice(["test", "val", "train", HOLDOUT]),
    default="test",
    show_default=True,
    help="Dataset split the images come from (their original files); holdout: the "
    "images in no split (prepare.holdout_fraction), production traffic no model has seen.",
)
@click.option("--shift", type=click.Choice(SHIFTS), default="none", show_default=True, help="Distribution shift.")
@click.option(
    "--severity",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Size of the shift (0.3: 30% brighter, see cvops/monitoring/shifts.py).",
)
@click.option("--n", "count", type=click.IntRange(min=1), default=200, show_default=True, help="Images to send.")
@click.option(
    "--offline",
    is_flag=True,
    help="Score in this process with the champion, straight into the inference log (no service needed).",
)
@click.option("--url", help="Service URL (default: http://127.0.0.1:<serve.port>).")
@click.option("--seed", type=int, help="Seed of the image draw, the noise and the feedback share (default: base.seed).")
@click.option(
    "--feedback",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Send the true labels of this share of the answered requests (POST /feedback).",
)
@click.option(
    "--truth-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write request_id,label of every answered request to this CSV (labels for `cvops feedback "
    "import` or `cvops labels import`, without people).",
)
def traffic(**options: Any) -> None:
    """Send demo traffic to the served model, shifted or not, to watch monitoring react.

    \b
    Examples:
      cvops traffic --shift none --n 300              # to `cvops serve`; then `cvops run monitoring`: no drift
      cvops traffic --shift brightness --n 300        # then `cvops run monitoring`: drift, one retraining
      cvops traffic --shift blur --n 200 --offline    # no service: straight into the inference log
      cvops traffic --source holdout --shift rotate --feedback 0.3 --truth-out truth.csv
                                                      # production-like: 30% of the answers get their true label
    """
    from cvops.monitoring.traffic import TrafficPlan, send_traffic
    from cvops.registry.tracking import use_project_store

    plan = TrafficPlan(**options)
    if plan.url and not plan.url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {plan.url!r}: give the service's URL, e.g. http://127.0.0.1:3000")
    checkout = project()
    params = checkout.params()
    use_project_store(checkout, params.mlflow.experiment)  # where --offline finds the champion
    click.secho(send_traffic(checkout, params, plan), fg="green")
