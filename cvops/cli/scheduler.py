"""Entry layer: the drift -> retraining decision, and the local scheduler.

The monitoring pipeline only returns a verdict. `monitor()` decides what it leads to (alert, retraining,
nothing) through the drift episodes of `cvops.monitoring.trigger`, and launches the training pipeline
itself. `cvops schedule` runs monitoring and training on their schedules from params.yaml with
APScheduler and a job store under monitoring/, since ZenML's local orchestrator cannot schedule;
`--remote` hands the training cron to an orchestrator that can.
"""

import logging
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cvops import renames
from cvops.cli.launch import TrainingResult, launch_monitoring, tracker_settings, train, training_lock
from cvops.config import Params, Project
from cvops.errors import AlreadyRunningError, ConfigError
from cvops.monitoring.trigger import Episodes, TriggerRecord, pipeline_lock, send_alert

if TYPE_CHECKING:
    from apscheduler.job import Job
    from apscheduler.jobstores.base import BaseJobStore
    from apscheduler.schedulers.base import BaseScheduler
    from apscheduler.triggers.base import BaseTrigger

    from cvops.monitoring.drift import DriftVerdict

log = logging.getLogger("cvops")
PIPELINES = ("monitoring", "training")


@dataclass
class MonitoringResult:
    verdict: "DriftVerdict"
    decision: TriggerRecord | None  # what a drift verdict led to (None: no drift, or not enough data)
    training: TrainingResult | None  # the retraining it started


def _outcome(training: TrainingResult | None) -> str:
    if training is None:
        return "submitted to the orchestrator"
    if not training.decision.passed:
        return f"version {training.version} failed its gate: no alias"
    return f"version {training.version} registered and passed its gate"


def monitor(
    project: Project,
    params: Params,
    window: int | None = None,
    since: datetime | None = None,
    retrain: bool = True,
) -> MonitoringResult | None:
    """Run the monitoring pipeline and act on its verdict: alert, and retrain once per drift episode.

    Refused (AlreadyRunningError) while another monitoring run is in progress in this checkout.
    """
    with pipeline_lock(project, "monitoring"):
        verdict = launch_monitoring(project, params, window, since)
        if verdict is None:
            return None
        now = datetime.now(UTC)
        episodes = Episodes(project.monitoring_dir, project.state_url)
        cooldown = timedelta(hours=params.monitor.cooldown_hours)
        decision = episodes.observe(verdict, now, cooldown, retrain and params.monitor.retrain)
        if decision is None:
            return MonitoringResult(verdict, None, None)
        training = None
        if decision.action == "retrain":
            decision, training = _retrain(project, params, episodes, decision)
        if decision.opened and decision.action != "retrain":  # a retraining alerted when it started
            send_alert(decision, params.monitor.webhook_url)
        elif not decision.opened:
            log.info("drift continues in episode %s: %s (%s)", decision.episode, decision.action, decision.outcome)
        episodes.record(decision)
        return MonitoringResult(verdict, decision, training)


def _retrain(
    project: Project, params: Params, episodes: Episodes, decision: TriggerRecord
) -> tuple[TriggerRecord, TrainingResult | None]:
    """Start the training pipeline for a drift episode, unless training is running or the episode has its run."""
    run_name = f"training-drift-{decision.at:%Y%m%d-%H%M%S}"
    trigger = {
        "retrain_trigger": decision.episode,
        "retrain_reason": decision.reason[:500],
        "retrain_report": decision.report or "",
    }
    try:
        with training_lock(project):
            if not episodes.claim(decision, run_name):  # another monitoring run got here first
                return decision.model_copy(
                    update={"action": "already_triggered", "outcome": "claimed by another run"}
                ), None
            decision = decision.model_copy(update={"run": run_name})
            send_alert(decision, params.monitor.webhook_url)
            try:
                training = train(project, params, trigger=trigger, run_name=run_name)
            except Exception as err:
                episodes.release(decision)  # the episode may retry once the cooldown is over
                episodes.record(decision.model_copy(update={"outcome": f"failed: {err}"[:500]}))
                raise
    except AlreadyRunningError as err:
        outcome = f"{err}; the next monitoring run retries"
        return decision.model_copy(update={"action": "deferred", "outcome": outcome}), None
    update = {"new_version": training.version if training else None, "outcome": _outcome(training)}
    return decision.model_copy(update=update), training


# --- the local scheduler -------------------------------------------------------------------------------------


def wanted_triggers(params: Params) -> dict[str, "BaseTrigger"]:
    """The jobs params.yaml asks for: monitoring every N minutes, training on a cron."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    triggers: dict[str, BaseTrigger] = {}
    if params.schedule.monitoring_minutes:
        triggers["monitoring"] = IntervalTrigger(minutes=params.schedule.monitoring_minutes, timezone=UTC)
    if params.schedule.training_cron:
        try:
            triggers["training"] = CronTrigger.from_crontab(params.schedule.training_cron, timezone=UTC)
        except ValueError as err:
            raise ConfigError(
                f"schedule.training_cron {params.schedule.training_cron!r} is not a crontab expression ({err}); "
                "write five fields, e.g. '0 3 * * 0' for Sundays at 03:00 UTC"
            ) from err
    return triggers


def run_job(root: str, pipeline: str) -> str:
    """`cvops run <pipeline>` in its own process (and session: a Ctrl-C of the scheduler does not reach it);
    says what happened. The command takes the pipeline's run lock and exits 11 when the pipeline is running."""
    log.info("scheduler: starting %s", pipeline)
    command = [sys.executable, "-m", "cvops.cli", "run", pipeline]
    result = subprocess.run(command, cwd=root, check=False, start_new_session=True)
    if result.returncode == AlreadyRunningError.exit_code:
        log.warning("scheduler: %s skipped: it is already running", pipeline)
        return f"skipped: {pipeline} is already running"
    outcome = "succeeded" if result.returncode == 0 else f"failed (exit {result.returncode})"
    log.info("scheduler: %s %s", pipeline, outcome)
    return outcome


def job_store(project: Project) -> str:
    """The scheduler's job store: the team's state database, else monitoring/scheduler.sqlite."""
    return project.state_url or f"sqlite:///{project.monitoring_dir / 'scheduler.sqlite'}"


def open_scheduler(project: Project) -> "BaseScheduler":
    """The scheduler over the checkout's job store, not started."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    project.monitoring_dir.mkdir(parents=True, exist_ok=True)
    return BackgroundScheduler(
        jobstores={"default": _job_store(project)},
        executors={"default": ThreadPoolExecutor(len(PIPELINES))},
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )


def _job_store(project: Project) -> "BaseJobStore":
    """APScheduler's SQLAlchemy job store, reading the jobs an earlier cvops saved under the old name of the
    function they run (`cvops.renames`): without it, APScheduler drops such a job with its next run time."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    class JobStore(SQLAlchemyJobStore):
        def _reconstitute_job(self, job_state: bytes) -> "Job":  # APScheduler's hook for each saved job
            state = renames.loads(job_state)
            state["func"] = renames.current_reference(state["func"])
            return super()._reconstitute_job(pickle.dumps(state))

    return JobStore(url=job_store(project))


def _sync(scheduler: "BaseScheduler", project: Project, params: Params, now: datetime) -> None:
    """Make the job store hold what params.yaml asks for. A job whose schedule did not change keeps its next
    run time; a new monitoring job is due at once, a new training job at its next cron time."""
    wanted = wanted_triggers(params)
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            scheduler.remove_job(job.id)
    for name, trigger in wanted.items():
        job = scheduler.get_job(name)
        if job is not None and str(job.trigger) == str(trigger):
            continue
        first = now if name == "monitoring" else trigger.get_next_fire_time(None, now)
        scheduler.add_job(
            run_job,
            trigger,
            args=[str(project.root), name],
            id=name,
            name=name,
            replace_existing=True,
            next_run_time=first,
        )


def run_due(project: Project, params: Params) -> list[tuple[str, str]]:
    """`cvops schedule --once`: run the jobs that are due, one after the other, and say what each did.

    A job skipped because its pipeline is running stays due; the others move to their next run time.
    """
    now = datetime.now(UTC)
    scheduler = open_scheduler(project)
    scheduler.start(paused=True)
    try:
        _sync(scheduler, project, params, now)
        report = []
        for job in scheduler.get_jobs():
            if job.next_run_time is None or job.next_run_time > now:
                report.append((job.id, f"not due (next {job.next_run_time:%Y-%m-%d %H:%M} UTC)"))
                continue
            outcome = run_job(*job.args)
            if not outcome.startswith("skipped"):
                job.modify(next_run_time=job.trigger.get_next_fire_time(None, now))  # no catch-up of missed runs
            report.append((job.id, outcome))
        return report
    finally:  # detach the store first: a paused scheduler that is shut down runs one last round of due jobs
        scheduler.remove_jobstore("default")
        scheduler.shutdown(wait=False)


def serve_schedule(project: Project, params: Params) -> None:
    """`cvops schedule`: run the jobs on their schedules until SIGTERM or Ctrl-C, then stop cleanly: no new
    runs start, and a run in progress finishes first."""
    scheduler = open_scheduler(project)
    scheduler.start(paused=True)
    _sync(scheduler, project, params, datetime.now(UTC))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.resume()
    for job in scheduler.get_jobs():
        log.info("scheduler: %s %s, next run %s", job.id, job.trigger, f"{job.next_run_time:%Y-%m-%d %H:%M} UTC")
    log.info("scheduler running (job store %s); SIGTERM or Ctrl-C stops it", job_store(project).split("@")[-1])
    stop.wait()
    log.info("scheduler stopping: waiting for running jobs to finish")
    scheduler.shutdown(wait=True)
    log.info("scheduler stopped")


def schedule_remote(params: Params) -> str:
    """Register the training cron with the active stack's orchestrator (Kubernetes, Kubeflow, Airflow...)."""
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    if not params.schedule.training_cron:
        raise ConfigError("schedule.training_cron is not set: set it in params.yaml, e.g. '0 3 * * 0'")
    wanted_triggers(params)  # validates the cron
    flavor = Client().active_stack.orchestrator.flavor
    if flavor == "local":
        raise ConfigError(
            f"the active stack's orchestrator ({flavor}) cannot run schedules: switch to a stack with a "
            "Kubernetes, Kubeflow or Airflow orchestrator (`zenml stack set NAME`), or run `cvops schedule` here"
        )
    from cvops.pipelines.training import training  # torch and timm: only once the schedule will be registered

    schedule = Schedule(name="cvops-training", cron_expression=params.schedule.training_cron)
    training.with_options(schedule=schedule, settings=tracker_settings(params.mlflow.experiment))(params=params)
    return f"training scheduled on the {flavor} orchestrator with cron '{params.schedule.training_cron}'"
