"""The monitoring loop as a user drives it, each command in its own process on a real checkout (ZenML
SQLite store, MLflow SQLite, DVC, Evidently, APScheduler's SQLite job store, a BentoML server):
demo traffic -> `cvops run monitoring` -> verdict, reports, alert, one retraining per drift episode;
and `cvops schedule`."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from cvops.config import Project, load_params
from cvops.monitoring.drift import HTML_FILE, JSON_FILE, VERDICT_FILE, DriftVerdict
from cvops.monitoring.trigger import Episodes
from cvops.registry.model_registry import CVOPS_CHAMPION_TAG
from cvops.serving.inference_log import read_inference_log
from tests.checkouts import COMMIT
from tests.cli import assert_one_line_error, clean_env, cvops
from tests.conftest import REPO, SMALL_RUN
from tests.server import Server, Webhook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion(trained_digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's trained checkout whose first version a reviewer made champion, with its
    reference.

    Its committed params.yaml is the small run without approvals (retrainings read params.yaml, as a scheduled
    job would, and become champion on their own).
    """
    root = trained_digits.copy(tmp_path_factory.mktemp("monitored") / "checkout")
    params = load_params(REPO / "params.yaml", ["registry.require_approval=false"], overlay=SMALL_RUN)
    (root / "params.yaml").write_text(yaml.safe_dump(params.as_params(), sort_keys=False))
    for command in (["add", "params.yaml"], COMMIT):
        subprocess.run(["git", *command], cwd=root, check=True)
    promoted = cvops(root, "models", "promote", "1", "--reviewer", "monitoring", "--note", "the first model")
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    return root


def client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")


def monitoring(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, DriftVerdict]:
    """`cvops run monitoring`; its output and the verdict it saved."""
    result = subprocess.run(
        [sys.executable, "-m", "cvops.cli", "run", "monitoring", *args],
        cwd=root,
        env=clean_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout.split("report: ")[1].split()[0]
    return result.stdout, DriftVerdict.model_validate_json((Path(report) / VERDICT_FILE).read_text())


def traffic(root: Path, shift: str, *args: str) -> None:
    result = cvops(root, "traffic", "--offline", "--shift", shift, "--n", "200", *args)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_reference_is_stored_with_the_version(champion: Path) -> None:
    version = client(champion).get_model_version("cvops-classifier", "1")
    reference = version.tags["reference"]
    local = Path(client(champion).download_artifacts(version.run_id, "reference", str(champion / "tmp-ref")))
    table = pd.read_parquet(local / "reference.parquet")
    prepared = pd.read_csv(champion / "data" / "prepared" / "manifest.csv")
    splits = prepared["split"].value_counts()
    # statistics of train + validation images; the model's view (embedding, label) of held-out validation images
    assert reference.endswith("/reference") and len(table) == splits["train"] + splits["val"]
    assert {"brightness", "sharpness", "width", "emb_0", "emb_7", "label"} <= set(table.columns)
    assert table["emb_0"].notna().sum() == table["label"].notna().sum() == splits["val"]
    assert set(table.loc[table["emb_0"].notna(), "split"]) == {"val"}
    assert int(version.tags["reference_rows"]) == len(table)


def test_iid_traffic_raises_no_alarm(champion: Path) -> None:
    traffic(champion, "none")
    output, verdict = monitoring(champion, "--window", "200")
    assert verdict.status == "no_drift" and "NO DRIFT" in output
    assert verdict.model_rows == 200  # every row carries the champion's embedding and label
    assert {c.group for c in verdict.columns} == {"statistics", "embedding", "prediction"}
    report = Path(verdict.report_dir or "")
    assert (report / HTML_FILE).stat().st_size > 10_000 and json.loads((report / JSON_FILE).read_text())
    runs = client(champion).search_runs(
        [client(champion).get_experiment_by_name("cvops-monitoring").experiment_id], "tags.drift = 'no_drift'"
    )
    assert runs and runs[0].data.metrics["window_rows"] == 200
    assert not Episodes(champion / "monitoring").records()


def test_a_tiny_window_is_not_enough_data(champion: Path) -> None:
    output, verdict = monitoring(champion, "--window", "10")
    assert verdict.status == "not_enough_data" and "NOT ENOUGH DATA" in output and "10 logged predictions" in output
    assert verdict.champion_approved and "outside cvops" not in output


def test_monitoring_flags_a_champion_set_outside_cvops(champion: Path) -> None:
    """As when someone moved the alias in the MLflow UI or API: cvops's record of its champion differs."""
    client(champion).set_registered_model_tag("cvops-classifier", CVOPS_CHAMPION_TAG, "0")
    try:
        output, verdict = monitoring(champion, "--window", "10")
    finally:
        client(champion).set_registered_model_tag("cvops-classifier", CVOPS_CHAMPION_TAG, "1")
    assert not verdict.champion_approved and "promoted outside cvops, no approval record" in output
    runs = client(champion).search_runs(
        [client(champion).get_experiment_by_name("cvops-monitoring").experiment_id], "tags.champion_approved = 'false'"
    )
    assert len(runs) == 1


def test_brightness_drift_retrains_once_per_episode_and_alerts(champion: Path) -> None:
    traffic(champion, "brightness")
    with Webhook() as hook:
        env = {"CVOPS_ALERT_WEBHOOK": hook.url}
        output, verdict = monitoring(champion, "--window", "200", env=env)
        assert verdict.status == "drift" and "brightness" in {c.column for c in verdict.drifted}
        (record,) = Episodes(champion / "monitoring").records()
        assert record.action == "retrain" and record.new_version == "2" and record.report == verdict.report_dir
        assert f"retraining run {record.run}: version 2" in output
        tags = client(champion).get_model_version("cvops-classifier", "2").tags
        assert tags["retrain_trigger"] == record.episode and tags["retrain_report"] == verdict.report_dir
        assert "brightness" in tags["retrain_reason"]

        output, again = monitoring(champion, "--window", "200", env=env)  # the drift goes on: same episode
        assert again.status == "drift" and "already_triggered" in output
    records = Episodes(champion / "monitoring").records()
    assert [r.action for r in records] == ["retrain", "already_triggered"]
    assert {r.episode for r in records} == {record.episode}
    assert len(client(champion).search_model_versions("name = 'cvops-classifier'")) == 2
    assert [a["action"] for a in hook.received] == ["retrain"] and hook.received[0]["episode"] == record.episode


def test_blur_is_detected(champion: Path) -> None:
    traffic(champion, "blur", "--severity", "1")  # digits are 8x8 files: sigma = 5% of the side per unit
    _, verdict = monitoring(champion, "--window", "200", "--no-retrain")
    assert verdict.status == "drift" and "sharpness" in {c.column for c in verdict.drifted}


def test_schedule_once_runs_due_jobs_and_skips_a_running_one(champion: Path) -> None:
    lock = filelock.FileLock(champion / "monitoring" / "locks" / "monitoring.lock")
    with lock:  # a monitoring run is in progress elsewhere
        skipped = cvops(champion, "schedule", "--once")
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "monitoring: skipped: monitoring is already running" in skipped.stdout
    ran = cvops(champion, "schedule", "--once")  # still due: it runs now
    assert "monitoring: succeeded" in ran.stdout, ran.stderr[-2000:]
    idle = cvops(champion, "schedule", "--once")
    assert "monitoring: not due (next " in idle.stdout


def test_scheduler_stops_on_sigterm_after_the_running_job(champion: Path) -> None:
    (champion / "monitoring" / "scheduler.sqlite").unlink()  # a fresh job store: monitoring is due at once
    log = champion / "scheduler.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cvops.cli", "schedule"],
            cwd=champion,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while "scheduler: starting monitoring" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # while the monitoring run is in progress
    assert process.wait(timeout=300) == 0
    text = log.read_text()
    assert text.index("scheduler stopping") < text.index("monitoring succeeded") < text.index("scheduler stopped")


def test_schedule_remote_needs_an_orchestrator_that_schedules(champion: Path) -> None:
    assert_one_line_error(cvops(champion, "schedule", "--remote"), 2, "schedule.training_cron is not set")
    Project(champion).set_params(["schedule.training_cron=0 3 * * 0"])
    try:
        assert_one_line_error(cvops(champion, "schedule", "--remote"), 2, "cannot run schedules", "zenml stack set")
        Project(champion).set_params(["schedule.training_cron=61 3 * * 0"])
        assert_one_line_error(cvops(champion, "schedule", "--once"), 2, "'61 3 * * 0' is not a crontab expression")
    finally:
        Project(champion).set_params(["schedule.training_cron=null"])


def test_a_busy_pipeline_gets_a_one_line_error(champion: Path) -> None:
    with filelock.FileLock(champion / "monitoring" / "locks" / "monitoring.lock"):
        busy = cvops(champion, "run", "monitoring")
    assert_one_line_error(busy, 11, "monitoring is already running", "wait for it")
    assert "NO DRIFT" not in busy.stdout and "DRIFT" not in busy.stdout  # nothing was checked


def test_traffic_to_the_service_is_logged_with_embeddings(champion: Path) -> None:
    server = Server(champion)
    try:
        sent = cvops(champion, "traffic", "--n", "20", "--url", f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()
    assert sent.returncode == 0 and "20 x 200" in sent.stdout, sent.stderr[-2000:]
    rows = read_inference_log(champion / "monitoring" / "inference_log")
    served = rows[rows["endpoint"] == "classify"]
    assert len(served) == 20 and all(len(e) == 8 for e in served["embedding"])
    champion_version = str(client(champion).get_model_version_by_alias("cvops-classifier", "champion").version)
    assert set(served["model_version"].astype(str)) == {champion_version}
    assert served["projection"].nunique() == 1  # the fingerprint of the projection it reduced them with

    refused = cvops(champion, "traffic", "--n", "5", "--url", f"http://127.0.0.1:{server.port}")
    assert_one_line_error(refused, 10, "no answer", "cvops serve")


def test_without_a_champion_monitoring_says_so_before_any_pipeline_starts(trained_digits, tmp_path: Path) -> None:
    root = trained_digits.copy(tmp_path / "checkout")  # version 1 is the challenger; nothing was promoted
    failed = cvops(root, "run", "monitoring")
    assert_one_line_error(failed, 8, "no 'champion'", "cvops models promote")
    assert "Initiating a new run for the pipeline" not in failed.stdout + failed.stderr


def test_a_champion_without_reference_gets_a_one_line_error(champion: Path) -> None:
    """A version registered before monitoring existed has no reference: say how to build one."""
    version = str(client(champion).get_model_version_by_alias("cvops-classifier", "champion").version)
    client(champion).delete_model_version_tag("cvops-classifier", version, "reference")
    shutil.rmtree(champion / "bentos" / "onnx" / version)
    failed = cvops(champion, "run", "monitoring")
    assert_one_line_error(failed, 5, f"version {version} has no monitoring reference", f"cvops quantize {version}")
    assert (failed.stdout + failed.stderr).count("has no monitoring reference") == 1  # not ZenML's report again
