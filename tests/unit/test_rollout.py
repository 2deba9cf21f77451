"""Rollout without a server: sticky canary assignment, the live comparison's statistics on synthetic logs, and
the monitoring window that leaves out what no client received (shadow rows, failed requests)."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from cvops.errors import ConfigError
from cvops.monitoring.live import HTML_FILE, JSON_FILE, compare_live, write_report
from cvops.serving.inference_log import InferenceLog, read_inference_log
from cvops.serving.rollout import takes_share


def test_a_key_always_lands_on_the_same_side_and_a_larger_fraction_only_adds_keys() -> None:
    keys = [f"user-{i}" for i in range(4000)]
    at_10 = {key for key in keys if takes_share(0.1, key)}
    at_30 = {key for key in keys if takes_share(0.3, key)}
    assert at_10 == {key for key in keys if takes_share(0.1, key)}  # sticky
    assert at_10 < at_30  # widening the canary keeps everyone it already had
    assert binomtest(len(at_30), len(keys), 0.3).pvalue > 1e-3  # fails wrongly 1 time in 1000


def log_rows(arm: str, n: int, labels: list[str], rng: np.random.Generator, **extra: object) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2026-12-01T10:00:00Z"),
            "arm": arm,
            "model_version": {"champion": "1"}.get(arm, "2"),
            "status": 200,
            "request_id": [f"r{i}" for i in range(n)],
            "label": rng.choice(labels, n),
            "score": rng.uniform(0.5, 1.0, n),
            "latency_ms": rng.uniform(2, 6, n),
            **extra,
        }
    )


def test_a_canary_with_another_label_mix_differs_and_one_like_the_champion_does_not() -> None:
    rng = np.random.default_rng(0)
    champion = log_rows("champion", 600, ["cat", "dog"], rng)
    alike = compare_live(pd.concat([champion, log_rows("canary", 300, ["cat", "dog"], rng)]), 100, 0.05)
    (test,) = alike.tests
    assert test.conclusive and test.verdict.startswith("no difference found"), test.verdict
    skewed = log_rows("canary", 300, ["cat", "cat", "cat", "dog"], rng)
    (test,) = compare_live(pd.concat([champion, skewed]), 100, 0.05).tests
    assert test.verdict.startswith("differs in label mix"), test.verdict
    assert test.p_values["label_mix"] < 1e-6 and test.p_values["error_rate"] == 1.0


def test_the_canary_is_compared_with_the_champion_traffic_of_its_own_processes_and_hours() -> None:
    rng = np.random.default_rng(4)
    night = log_rows("champion", 600, ["cat"], rng, timestamp=pd.Timestamp("2026-12-01T03:00:00Z"), replica="a")
    elsewhere = log_rows("champion", 600, ["dog"], rng, replica="b")  # a replica without the canary
    day = [log_rows(arm, n, ["cat", "dog"], rng, replica="a") for arm, n in (("champion", 600), ("canary", 300))]
    (test,) = compare_live(pd.concat([night, elsewhere, *day]), 100, 0.05).tests
    assert test.verdict.startswith("no difference found") and "300 canary and 600 champion" in test.verdict


def test_a_canary_that_fails_more_differs_in_error_rate() -> None:
    rng = np.random.default_rng(1)
    canary = log_rows("canary", 300, ["cat", "dog"], rng)
    canary.loc[:29, "status"] = 500
    comparison = compare_live(pd.concat([log_rows("champion", 600, ["cat", "dog"], rng), canary]), 100, 0.05)
    (test,) = comparison.tests
    assert "error rate" in test.verdict and test.error_rate_difference == pytest.approx(0.1)
    stats = {a.arm: a for a in comparison.arms}
    assert stats["canary"].errors == 30 and stats["canary"].error_interval[0] > 0.06


def test_too_little_traffic_is_said_not_read_as_a_difference() -> None:
    rng = np.random.default_rng(2)
    rows = pd.concat([log_rows("champion", 600, ["cat"], rng), log_rows("canary", 20, ["dog"], rng)])
    (test,) = compare_live(rows, 100, 0.05).tests
    assert not test.conclusive
    assert test.verdict == "too little traffic to conclude (canary 20 predictions; need 100 each, --min-requests)"


def test_the_shadow_is_paired_with_the_champion_request_by_request(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    champion = log_rows("champion", 400, ["cat", "dog"], rng)
    shadow = champion.assign(arm="shadow", model_version="2")
    flipped = shadow.index[:40]  # 10% of the requests get the other label
    shadow.loc[flipped, "label"] = np.where(shadow.loc[flipped, "label"] == "cat", "dog", "cat")
    old = champion.drop(columns=["arm", "status"]).assign(request_id=[f"old{i}" for i in range(400)])  # pre-rollout
    rows = pd.concat([champion, shadow.sample(frac=1.0, random_state=0), old])
    comparison = compare_live(rows, 100, 0.05)
    (test,) = comparison.tests
    assert test.paired == 400 and test.agreement == pytest.approx(0.9)
    low, high = test.agreement_interval or (0, 0)
    assert low < 0.9 < high and high - low < 0.07
    assert {a.arm: a.predictions for a in comparison.arms} == {"champion": 800, "shadow": 400}
    page = write_report(comparison, rows, tmp_path / "live")
    assert (tmp_path / "live" / JSON_FILE).is_file() and page.name == HTML_FILE
    assert "predicts the champion&#x27;s label on 90.0%" in page.read_text()


@pytest.mark.parametrize("where", ["files", "postgres"])
def test_monitoring_reads_only_what_clients_received(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue("postgres_db") if where == "postgres" else tmp_path
    log = InferenceLog(target)
    log.append(
        [
            {"label": "old"},  # logged before rollout: no arm, no status
            {"label": "a", "arm": "champion", "status": 200},
            {"label": "b", "arm": "canary", "status": 200},
            {"label": "a", "arm": "shadow", "status": 200},
            {"arm": "champion", "status": 400},
        ]
    )
    log.close()
    if where == "files":  # a log written before rollout: neither column in any row
        (tmp_path / "old").mkdir()
        (tmp_path / "old" / "2026-11-30.jsonl").write_text('{"timestamp": "2026-11-30T10:00:00Z", "label": "older"}\n')
        assert read_inference_log(tmp_path / "old", answers=True)["label"].tolist() == ["older"]
    assert len(read_inference_log(target)) == 5
    assert read_inference_log(target, answers=True)["label"].tolist() == ["old", "a", "b"]
    assert read_inference_log(target, last=2, answers=True)["label"].tolist() == ["a", "b"]


def test_a_state_database_from_before_schema_numbers_is_migrated_once_and_a_newer_one_refused(
    postgres_db: str,
) -> None:
    """A team's database made by an older cvops (the tables of version 1, no version recorded) is brought
    forward by the first connection, keeps its rows, and then answers the newer queries; one newer than this
    cvops is refused before anything is read."""
    import psycopg2

    from cvops.stack import migrations
    from cvops.stack.state import SharedState

    old = psycopg2.connect(postgres_db)
    with old, old.cursor() as cursor:  # what cvops wrote before (version 1's statements, verbatim)
        for migration in (
            migrations.MIGRATIONS[migrations.INFERENCE_LOG][0],
            migrations.MIGRATIONS[migrations.STATE][0],
        ):
            for statement in migration.statements:
                cursor.execute(statement)
        cursor.execute(
            "INSERT INTO cvops_inference_log (at, replica, body) VALUES "
            """(now(), 'r', '{"timestamp": "2026-12-01T00:00:00Z", "label": "kept", "arm": "champion"}'), """
            """(now(), 'r', '{"timestamp": "2026-12-01T00:00:00Z", "label": "aside", "arm": "shadow"}')"""
        )
        cursor.execute("INSERT INTO cvops_logs (name, line) VALUES ('audit', 'an old line')")
    migrations._checked.clear()
    assert read_inference_log(postgres_db, answers=True)["label"].tolist() == ["kept"]  # migrated, then read
    assert SharedState(Path("."), postgres_db).lines("audit") == ["an old line"]
    with old, old.cursor() as cursor:
        cursor.execute("SELECT part, version FROM cvops_schema ORDER BY part")
        assert cursor.fetchall() == [("inference_log", 2), ("state", 2)]
        cursor.execute("UPDATE cvops_schema SET version = 99 WHERE part = 'inference_log'")
    old.close()
    migrations._checked.clear()
    with pytest.raises(ConfigError, match=re.escape("schema 99, newer than this cvops knows (2): upgrade cvops")):
        read_inference_log(postgres_db)
