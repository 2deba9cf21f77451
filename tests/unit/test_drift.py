"""Drift verdicts with the real Evidently on synthetic tables, the projection, the shifts, and the episode
rules that turn verdicts into at most one retraining per drift episode."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvops.config import PARAMS_FILE, MonitorParams, Project
from cvops.env import STATE_ENV
from cvops.errors import AlreadyRunningError
from cvops.monitoring.drift import HTML_FILE, JSON_FILE, VERDICT_FILE, DriftVerdict, detect_drift, window_table
from cvops.monitoring.quality import LiveQuality
from cvops.monitoring.reference import STATISTICS, embedding_columns
from cvops.monitoring.shifts import SHIFTS, apply_shift
from cvops.monitoring.trigger import Episodes, pipeline_lock, send_alert
from cvops.serving.features import image_features
from cvops.serving.inference_log import InferenceLog, read_inference_log
from cvops.serving.projection import Projection
from tests.server import Webhook

PARAMS = MonitorParams(min_samples=50, embedding_dims=4)
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def reference_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    table = pd.DataFrame({c: rng.normal(100, 20, n) for c in STATISTICS})
    table[embedding_columns(4)] = rng.normal(0, 1, (n, 4))
    table["label"] = rng.choice(["cat", "dog"], n)
    return table


def log_rows(n: int, rng: np.random.Generator, version: str = "3", brightness: float = 0.0) -> pd.DataFrame:
    """Inference-log rows as the service writes them: embeddings as lists, a model version, timestamps."""
    table = reference_table(n, rng)
    table["brightness"] += brightness
    rows = table[[*STATISTICS, "label"]].copy()
    rows["embedding"] = table[embedding_columns(4)].to_numpy().tolist()
    rows["projection"] = "p1"
    rows["model_version"] = version
    rows["timestamp"] = pd.Timestamp(T0)
    return rows


def test_same_distribution_is_no_drift_and_a_shift_names_its_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = reference_table(2000, rng)

    same = detect_drift(reference, "p1", log_rows(300, rng), "3", PARAMS, tmp_path / "same")
    assert same.status == "no_drift" and not same.drifted
    assert same.model_rows == 300 and {c.group for c in same.columns} == {"statistics", "embedding", "prediction"}
    assert same.threshold == pytest.approx(PARAMS.false_alarm_rate / len(same.columns))

    shifted = detect_drift(reference, "p1", log_rows(300, rng, brightness=15.0), "3", PARAMS, tmp_path / "shifted")
    assert shifted.status == "drift"
    assert [c.column for c in shifted.drifted] == ["brightness"]
    assert "brightness" in shifted.reason
    for name in (HTML_FILE, JSON_FILE, VERDICT_FILE):
        assert (tmp_path / "shifted" / name).stat().st_size > 0
    saved = DriftVerdict.model_validate_json((tmp_path / "shifted" / VERDICT_FILE).read_text())
    assert saved.status == "drift" and saved.report_dir == str(tmp_path / "shifted")
    assert "brightness" in (tmp_path / "shifted" / HTML_FILE).read_text()


def test_a_detectors_class_mix_is_tested_over_every_box_not_only_the_best_one(tmp_path: Path) -> None:
    """The best box of every image is a '1' in both windows; in the second, the other boxes are all '7's."""
    rng = np.random.default_rng(4)

    def boxes(n: int, others: list[str]) -> list[list[str]]:
        return [["1", *rng.choice(others, size=int(rng.integers(1, 4)))] for _ in range(n)]

    reference = reference_table(600, rng).assign(label="1")
    reference["labels"] = [np.array(found) for found in boxes(600, ["4", "7", "9"])]  # as Parquet gives them back
    same, skewed = log_rows(200, rng).assign(label="1"), log_rows(200, rng).assign(label="1")
    same["labels"], skewed["labels"] = boxes(200, ["4", "7", "9"]), boxes(200, ["7"])
    calm = detect_drift(reference, "p1", same, "3", PARAMS, tmp_path / "same")
    mix = {c.column: c for c in calm.columns}["box_label"]
    assert mix.group == "prediction" and mix.method == "chisquare" and not calm.drifted, calm.table()
    assert calm.reference_rows == 600 and calm.model_rows == 200  # rows are images: the box rows are extra
    shifted = detect_drift(reference, "p1", skewed, "3", PARAMS, tmp_path / "skewed")
    assert [c.column for c in shifted.drifted] == ["box_label"], shifted.table()


@pytest.mark.slow
def test_false_alarm_rate_holds_over_many_iid_windows(tmp_path: Path) -> None:
    """The Bonferroni threshold keeps the family-wise alarm rate near false_alarm_rate (0.05): with 14
    columns, testing each at 0.05 would alarm in half of the windows."""
    rng = np.random.default_rng(1)
    reference = reference_table(2000, rng)
    alarms = sum(
        detect_drift(reference, "p1", log_rows(200, rng), "3", PARAMS, tmp_path / str(i)).status == "drift"
        for i in range(20)
    )
    assert alarms <= 3  # binomial(20, 0.05): P(X > 3) = 1.6%; 14 columns each at 0.05 expect 10


def test_a_tiny_window_is_not_enough_data_not_an_alarm(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    verdict = detect_drift(
        reference_table(500, rng), "p1", log_rows(20, rng, brightness=80.0), "3", PARAMS, tmp_path / "r"
    )
    assert verdict.status == "not_enough_data" and not verdict.columns
    assert "20 logged predictions" in verdict.reason and "min_samples is 50" in verdict.reason
    assert not (tmp_path / "r" / HTML_FILE).exists() and (tmp_path / "r" / VERDICT_FILE).is_file()


def test_rows_of_another_version_or_projection_feed_only_the_statistics(tmp_path: Path) -> None:
    """Another version, or another build of its reference, embeds differently: those rows count for the
    image statistics, not for embeddings or labels."""
    rng = np.random.default_rng(3)
    stale = log_rows(10, rng, version="3")
    stale["projection"] = "p0"  # logged before the version's reference was rebuilt
    rows = pd.concat([log_rows(110, rng, version="2"), stale, log_rows(30, rng, version="3")], ignore_index=True)
    rows["embedding"] = rows["embedding"].map(np.array)  # as the rows come back from Parquet
    table, ours, note = window_table(rows, "3", "p1")
    assert ours == 30
    assert table["emb_0"].notna().sum() == 30 and table["label"].notna().sum() == 30
    assert table["brightness"].notna().sum() == 150
    assert note is not None and note.startswith("10 rows of version 3") and "cvops quantize 3" in note

    verdict = detect_drift(reference_table(1000, rng), "p1", rows, "3", PARAMS, tmp_path / "r")
    assert {c.group for c in verdict.columns} == {"statistics"}
    assert "30 rows answered by version 3" in verdict.notes[0] and "10 rows of version 3" in verdict.notes[1]


def test_projection_keeps_the_main_directions() -> None:
    rng = np.random.default_rng(4)
    embeddings = rng.normal(0, 1, (500, 2)) @ rng.normal(0, 1, (2, 64)) + rng.normal(0, 0.01, (500, 64)) + 5
    projection = Projection.fit(embeddings.astype(np.float32), dims=4)
    assert projection.dims == 4 and projection.explained > 0.99  # the data is 2-dimensional plus noise
    reduced = projection.apply(embeddings)
    assert reduced.shape == (500, 4) and np.abs(reduced.mean(axis=0)).max() < 1e-3
    assert np.allclose(projection.components @ projection.components.T, np.eye(4), atol=1e-4)


@pytest.mark.parametrize("shift", [s for s in SHIFTS if s != "none"])
def test_each_shift_moves_the_statistic_it_targets(shift: str) -> None:
    rng = np.random.default_rng(5)
    pixels = (rng.random((64, 64, 3)) * 120 + 40).astype(np.uint8)
    base = Image.fromarray(pixels)
    before = image_features(np.asarray(base))
    after = image_features(np.asarray(apply_shift(base, shift, 0.3, rng)))
    assert apply_shift(base, shift, 0.3, rng).size == base.size
    if shift == "brightness":
        assert after["brightness"] == pytest.approx(before["brightness"] * 1.3, rel=0.02)
    elif shift in ("blur", "rotate"):  # smoothing, and the bilinear resampling of a rotation
        assert after["sharpness"] < 0.7 * before["sharpness"]
    else:
        assert after["contrast"] > before["contrast"]
    assert np.array_equal(np.asarray(apply_shift(base, "none", 0.3, rng)), pixels)


def verdict(status: str, version: str = "3") -> DriftVerdict:
    return DriftVerdict(
        status=status,
        model_version=version,
        rows=200,
        model_rows=200,
        reference_rows=1000,  # type: ignore[arg-type]
        window_start=None,
        window_end=None,
        threshold=0.003,
        report_dir="reports/x",
    )


@pytest.fixture(params=["files", "postgres"])
def episodes(request: pytest.FixtureRequest, tmp_path: Path) -> Episodes:
    """The episode state and audit in a checkout's files, and in a team's state database."""
    if request.param == "files":
        return Episodes(tmp_path)
    return Episodes(tmp_path / "not-used", request.getfixturevalue("postgres_db"))


def test_one_drift_episode_triggers_one_retraining(episodes: Episodes) -> None:
    cooldown = timedelta(hours=24)
    first = episodes.observe(verdict("drift"), T0, cooldown, retrain=True)
    assert first is not None and first.action == "retrain" and first.opened
    assert episodes.claim(first, "training-drift-1")
    assert not episodes.claim(first, "training-drift-2")  # a second monitoring run that saw the same verdict
    again = episodes.observe(verdict("drift", version="4"), T0 + timedelta(hours=1), cooldown, retrain=True)
    assert again is not None and again.action == "already_triggered" and again.episode == first.episode
    assert again.run == "training-drift-1" and not again.opened
    assert episodes.observe(verdict("not_enough_data"), T0 + timedelta(hours=2), cooldown, retrain=True) is None
    assert episodes.state().open is not None  # not enough data neither opens nor closes an episode

    assert episodes.observe(verdict("no_drift"), T0 + timedelta(hours=3), cooldown, retrain=True) is None
    assert episodes.state().open is None
    # a new episode inside the cooldown waits ...
    during = episodes.observe(verdict("drift"), T0 + timedelta(hours=4), cooldown, retrain=True)
    assert during is not None and during.action == "cooldown" and during.episode != first.episode
    # ... and triggers once the cooldown is over, if the drift is still there
    after = episodes.observe(verdict("drift"), T0 + timedelta(hours=25), cooldown, retrain=True)
    assert after is not None and after.action == "retrain" and after.episode == during.episode


def test_live_accuracy_below_the_test_accuracy_opens_an_episode_like_drift(tmp_path: Path) -> None:
    episodes, cooldown = Episodes(tmp_path), timedelta(hours=24)
    quality = LiveQuality(
        status="low",
        model_version="3",
        labelled=100,
        test_accuracy=0.95,
        max_drop=0.05,
        accuracy=0.6,
        low=0.5,
        high=0.69,
    )
    degraded = verdict("no_drift").model_copy(update={"quality": quality})
    decision = episodes.observe(degraded, T0, cooldown, retrain=True)
    assert decision is not None and decision.action == "retrain" and decision.opened
    assert decision.reason.startswith("live accuracy 0.600 [0.500, 0.690] on 100 labelled requests, below")
    assert episodes.state().open is not None  # no drift, but still low: the episode stays open
    unknown = quality.model_copy(update={"status": "not_enough_feedback"})
    assert (
        episodes.observe(
            verdict("no_drift").model_copy(update={"quality": unknown}), T0 + timedelta(hours=1), cooldown, retrain=True
        )
        is None
    )
    assert episodes.state().open is None  # no drift and no low accuracy found: closed


def test_a_failed_retraining_frees_its_episode_after_the_cooldown(episodes: Episodes) -> None:
    cooldown = timedelta(hours=24)
    first = episodes.observe(verdict("drift"), T0, cooldown, retrain=True)
    assert first is not None and episodes.claim(first, "training-drift-1")
    episodes.release(first)
    soon = episodes.observe(verdict("drift"), T0 + timedelta(hours=1), cooldown, retrain=True)
    assert soon is not None and soon.action == "cooldown"
    later = episodes.observe(verdict("drift"), T0 + timedelta(hours=25), cooldown, retrain=True)
    assert later is not None and later.action == "retrain" and later.episode == first.episode


def test_retrain_false_only_alerts(tmp_path: Path) -> None:
    decision = Episodes(tmp_path).observe(verdict("drift"), T0, timedelta(0), retrain=False)
    assert decision is not None and decision.action == "alert_only"


def test_the_audit_keeps_every_record(episodes: Episodes) -> None:
    decision = episodes.observe(verdict("drift"), T0, timedelta(0), retrain=True)
    assert decision is not None
    episodes.record(decision.model_copy(update={"run": "r1", "new_version": "5", "outcome": "passed"}))
    (record,) = episodes.records()
    assert (record.action, record.run, record.new_version, record.report) == ("retrain", "r1", "5", "reports/x")


def test_alert_posts_json_to_the_webhook(tmp_path: Path) -> None:
    decision = Episodes(tmp_path).observe(verdict("drift"), T0, timedelta(0), retrain=True)
    assert decision is not None
    with Webhook() as hook:
        send_alert(decision, hook.url)
    assert len(hook.received) == 1
    assert hook.received[0]["event"] == "cvops.drift" and hook.received[0]["episode"] == decision.episode
    for dead in ("http://127.0.0.1:9/unreachable", "127.0.0.1:9", "http://bad host/"):
        send_alert(decision, dead)  # a dead or malformed webhook is logged, never raised


@pytest.mark.parametrize("where", ["files", "postgres"])
def test_a_pipeline_runs_once_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, where: str
) -> None:
    """In a checkout (lock files), and across hosts sharing a PostgreSQL state URL (advisory locks; each
    pipeline_lock holds its own database session, as another host would)."""
    state_url = request.getfixturevalue("postgres_db") if where == "postgres" else None
    monkeypatch.delenv(STATE_ENV, raising=False)
    for root in (tmp_path, tmp_path / "elsewhere"):
        root.mkdir(exist_ok=True)
        (root / PARAMS_FILE).write_text(f"state:\n  url: {state_url or 'null'}\n")
    project = Project(tmp_path)
    other_host = Project(tmp_path / "elsewhere") if state_url else project  # shares only the database
    with pipeline_lock(project, "training"):
        with (
            pytest.raises(AlreadyRunningError, match="training is already running"),
            pipeline_lock(other_host, "training"),
        ):
            pass
        with pipeline_lock(project, "monitoring"):  # another pipeline is free to run
            pass
    with pipeline_lock(project, "training"):  # released
        pass


def test_the_log_reader_leaves_a_line_being_written(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path)
    log.append([{"label": "a", "brightness": 1.0}, {"label": "b", "brightness": 2.0}])
    log.close()
    (day,) = tmp_path.glob("*.jsonl")
    with day.open("a") as f:
        f.write('{"timestamp": "2026-11-22T08:00:00+00:00", "label": "c", "bri')  # the service is mid-write
    rows = read_inference_log(tmp_path)
    assert list(rows["label"]) == ["a", "b"]
    since = datetime.now(UTC).astimezone(timezone(timedelta(hours=-11)))  # the same instant, another offset
    assert read_inference_log(tmp_path, since=since - timedelta(minutes=1))["label"].tolist() == ["a", "b"]
