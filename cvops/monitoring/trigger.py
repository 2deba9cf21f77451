"""From drift verdicts to retraining: drift episodes, the cooldown, the audit trail, alerts, run locks.

An episode opens at the first alarm (drift, or live accuracy below the test accuracy: `DriftVerdict.alarm`)
and closes at the next verdict of no drift and no low accuracy; "not enough data" changes nothing.
An episode triggers at most one retraining, and no retraining starts within `cooldown` of the previous one:
an episode that opens during the cooldown triggers once it is over, if the alarm is still there. Every
decision on an alarm is appended to the audit file.
"""

import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from cvops.config import Project
from cvops.env import WEBHOOK_ENV
from cvops.errors import AlreadyRunningError
from cvops.monitoring.drift import DriftVerdict
from cvops.stack.state import LockBusy, SharedState, held

log = logging.getLogger(__name__)
Action = Literal["retrain", "cooldown", "already_triggered", "alert_only", "deferred"]


class Episode(BaseModel):
    key: str  # <champion version>@<opened at>: names the episode in alerts, the audit and version tags
    opened_at: datetime
    model_version: str
    triggered_run: str | None = None  # the ZenML run its retraining started


class EpisodeState(BaseModel):
    open: Episode | None = None
    last_trigger_at: datetime | None = None


class TriggerRecord(BaseModel):
    """One line of the audit: what a drift verdict led to, and (for a retraining) what came of it."""

    at: datetime
    episode: str
    action: Action
    reason: str
    report: str | None
    model_version: str
    run: str | None = None  # the ZenML run of the retraining
    new_version: str | None = None  # the model version it registered
    outcome: str | None = None
    opened: bool = False  # this verdict opened the episode (alerts go out once per episode)


class Episodes:
    """The drift-episode state and the trigger audit: JSON under monitoring/ of the checkout, or in the team's
    state database (`state_url`), where the scheduler of every host sees the same episodes."""

    STATE, AUDIT = "drift_state.json", "triggers.jsonl"

    def __init__(self, directory: Path, state_url: str | None = None) -> None:
        self.store = SharedState(directory, state_url)

    def state(self) -> EpisodeState:
        saved = self.store.read(self.STATE)
        return EpisodeState() if saved is None else EpisodeState.model_validate_json(saved)

    def _save(self, state: EpisodeState) -> None:
        self.store.write(self.STATE, state.model_dump_json(indent=2))

    def observe(self, verdict: DriftVerdict, now: datetime, cooldown: timedelta, retrain: bool) -> TriggerRecord | None:
        """Update the episode state with a verdict; for a drift verdict, the decision (not yet recorded)."""
        state = self.state()
        if verdict.status == "no_drift" and not verdict.alarm and state.open is not None:
            log.info("drift episode %s closed", state.open.key)
            self._save(state.model_copy(update={"open": None}))
        if not verdict.alarm:
            return None
        episode, opened = state.open, state.open is None
        if episode is None:
            episode = Episode(
                key=f"v{verdict.model_version}@{now:%Y%m%dT%H%M%SZ}", opened_at=now, model_version=verdict.model_version
            )
            self._save(state.model_copy(update={"open": episode}))
        decision = TriggerRecord(
            at=now,
            episode=episode.key,
            action="retrain",
            reason=verdict.reason,
            report=verdict.report_dir,
            model_version=verdict.model_version,
            opened=opened,
        )
        if episode.triggered_run is not None:
            return decision.model_copy(
                update={
                    "action": "already_triggered",
                    "run": episode.triggered_run,
                    "outcome": f"episode {episode.key} already started run {episode.triggered_run}",
                }
            )
        if not retrain:
            return decision.model_copy(
                update={"action": "alert_only", "outcome": "retraining is off (monitor.retrain, --no-retrain)"}
            )
        if state.last_trigger_at is not None and now < state.last_trigger_at + cooldown:
            until = state.last_trigger_at + cooldown
            return decision.model_copy(
                update={"action": "cooldown", "outcome": f"cooldown until {until:%Y-%m-%d %H:%M} UTC"}
            )
        return decision

    def claim(self, decision: TriggerRecord, run: str) -> bool:
        """Record that `run` retrains for the decision's episode, unless another process claimed it first.

        Called under the training lock, so of two monitoring runs that saw the same episode, one retrains.
        """
        state = self.state()
        if state.open is None or state.open.key != decision.episode or state.open.triggered_run is not None:
            return False
        self._save(EpisodeState(open=state.open.model_copy(update={"triggered_run": run}), last_trigger_at=decision.at))
        return True

    def release(self, decision: TriggerRecord) -> None:
        """The retraining failed: the episode may trigger again once the cooldown is over."""
        state = self.state()
        if state.open is not None and state.open.key == decision.episode:
            self._save(state.model_copy(update={"open": state.open.model_copy(update={"triggered_run": None})}))

    def record(self, decision: TriggerRecord) -> None:
        self.store.append(self.AUDIT, decision.model_dump_json())

    def records(self) -> list[TriggerRecord]:
        return [TriggerRecord.model_validate_json(line) for line in self.store.lines(self.AUDIT)]


def send_alert(decision: TriggerRecord, webhook_url: str | None) -> None:
    """A log line, and a JSON POST to the webhook when one is set (params or CVOPS_ALERT_WEBHOOK).

    A webhook that fails is logged, never raised: the alert must not stop the retraining.
    """
    log.warning("DRIFT %s: %s -> %s (report %s)", decision.episode, decision.reason, decision.action, decision.report)
    url = os.environ.get(WEBHOOK_ENV) or webhook_url
    if not url:
        return
    body = json.dumps({"event": "cvops.drift", **decision.model_dump(mode="json")}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except Exception as err:  # OSError, and ValueError / InvalidURL for a malformed URL
        log.error("drift alert webhook %s failed: %s", url, err)


@contextmanager
def pipeline_lock(project: Project, pipeline: str) -> Iterator[None]:
    """Hold the run lock of `pipeline`, or fail at once.

    `cvops run training` and `cvops run monitoring` take it however they were started (by hand, by the
    scheduler, by a drift trigger), so the same pipeline never runs twice at once: in a checkout (a file in
    monitoring/locks/), or across every host sharing the project's PostgreSQL state URL. It is released
    when the process ends, however it ends.
    """
    try:
        with held(pipeline, project.state_url, project.locks_dir, wait=0):
            yield
    except LockBusy as err:
        where = "on the team's state database" if project.state_url else f"in this checkout (lock {err})"
        raise AlreadyRunningError(f"{pipeline} is already running {where}: wait for it to finish") from err
