"""The feedback loop without a server: request ids, true labels checked against the log (files and PostgreSQL),
live accuracy and its alarm, captured images, and the holdout split."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvops.config import HOLDOUT, CaptureParams, MonitorParams, Project
from cvops.data.prepare import split_dataset
from cvops.env import S3_URL_ENV
from cvops.errors import FeedbackError
from cvops.monitoring.quality import live_quality
from cvops.serving.capture import CaptureStore
from cvops.serving.feedback import (
    TRUE_LABEL,
    FeedbackStore,
    UnknownRequest,
    attach_feedback,
    find_requests,
    give_feedback,
    labelled_window,
    new_request_id,
    read_labels_csv,
)
from cvops.serving.inference_log import InferenceLog, LogTarget

CLASSES = ["cat", "dog"]


def served(target: LogTarget, n: int, arm: str = "champion", status: int = 200) -> list[str]:
    """Log `n` answers as the service does (waiting until they are written); their request ids."""
    ids = [new_request_id() for _ in range(n)]
    log = InferenceLog(target)
    rows = (
        {"request_id": i, "arm": arm, "status": status, "model_version": "1", "label": "cat", "score": 0.9} for i in ids
    )
    log.append(rows).result(10)
    log.close()
    return ids


def test_request_ids_are_unique_and_ordered_by_time() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 32 for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


@pytest.fixture(params=["files", "postgresql"])
def log_target(request: pytest.FixtureRequest, tmp_path: Path) -> LogTarget:
    return request.getfixturevalue("postgres_db") if request.param == "postgresql" else tmp_path / "log"


def test_a_label_for_a_logged_answer_is_recorded_and_a_repeat_replaces_it(log_target: LogTarget) -> None:
    ids = served(log_target, 5)
    shadow_only = served(log_target, 1, arm="shadow")  # no client received a shadow's prediction
    refused = served(log_target, 1, status=400)  # nor an answer to a bad request
    assert set(find_requests(log_target, [*ids, *shadow_only, *refused, new_request_id()])) == set(ids)
    give_feedback(log_target, {ids[0]: "dog", ids[1]: "cat"}, CLASSES, "api")
    give_feedback(log_target, {ids[0]: "cat"}, CLASSES, "api")  # the client corrects itself
    labels = FeedbackStore(log_target).labels()
    assert {i: row["label"] for i, row in labels.items()} == {ids[0]: "cat", ids[1]: "cat"}
    assert labels[ids[0]]["model_version"] == "1" and labels[ids[0]]["arm"] == "champion"
    window = labelled_window(log_target, None, None)
    assert window.set_index("request_id")[TRUE_LABEL].to_dict() == {
        ids[0]: "cat",
        ids[1]: "cat",
        **dict.fromkeys(ids[2:]),
    }


def test_unknown_ids_and_labels_are_refused_and_record_nothing(log_target: LogTarget) -> None:
    (known,) = served(log_target, 1)
    with pytest.raises(UnknownRequest, match="unknown request_id"):
        give_feedback(log_target, {known: "cat", new_request_id(): "dog"}, CLASSES, "import")
    with pytest.raises(UnknownRequest, match="unknown request_id 'x'"):
        give_feedback(log_target, {"x": "dog"}, CLASSES, "import")
    with pytest.raises(FeedbackError, match=r"unknown label 'cow'.*give one of cat, dog"):
        give_feedback(log_target, {known: "cow"}, CLASSES, "import")
    assert FeedbackStore(log_target).labels() == {}


def test_a_labels_file_needs_its_header_and_both_columns() -> None:
    assert read_labels_csv("request_id,label\na,cat\nb,dog\n", "f.csv") == {"a": "cat", "b": "dog"}
    with pytest.raises(FeedbackError, match="first line must name the columns request_id,label"):
        read_labels_csv("a,cat\n", "f.csv")
    with pytest.raises(FeedbackError, match="line 3"):
        read_labels_csv("request_id,label\na,cat\nb,\n", "f.csv")
    with pytest.raises(FeedbackError, match="has no labels"):
        read_labels_csv("request_id,label\n", "f.csv")


def window(correct: int, wrong: int, unlabelled: int = 0) -> pd.DataFrame:
    n = correct + wrong + unlabelled
    rows = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "model_version": "1", "label": "cat"})
    feedback = {f"r{i}": {"label": "cat" if i < correct else "dog"} for i in range(correct + wrong)}
    return attach_feedback(rows, feedback)


def test_live_accuracy_alarms_only_when_its_whole_interval_is_below_the_test_accuracy() -> None:
    params = MonitorParams(min_feedback=30, max_accuracy_drop=0.05)
    fine = live_quality(window(90, 10, unlabelled=500), "1", 0.92, params)
    assert fine.status == "ok" and fine.labelled == 100 and fine.accuracy == pytest.approx(0.9)
    assert fine.low is not None and fine.high is not None and fine.low < 0.9 < fine.high
    assert fine.line == f"live accuracy 0.900 [{fine.low:.3f}, {fine.high:.3f}] on 100 labelled requests"
    assert fine.class_recall == {"cat": 1.0, "dog": 0.0}
    dropped = live_quality(window(60, 40), "1", 0.92, params)
    assert dropped.status == "low" and dropped.high is not None and dropped.high < 0.87
    assert "below test accuracy 0.920" in dropped.reason
    # below the test accuracy, but on 30 labels the interval still reaches the floor: no alarm
    unsure = live_quality(window(26, 4), "1", 0.92, params)
    assert unsure.status == "ok" and unsure.accuracy is not None and unsure.accuracy < 0.87
    few = live_quality(window(10, 10), "1", 0.92, params)
    assert few.status == "not_enough_feedback" and few.accuracy is None
    other_version = window(60, 40).assign(model_version="2")  # labels of another version's answers don't count
    assert live_quality(other_version, "1", 0.92, params).labelled == 0


def test_capture_keeps_the_sampled_share_and_every_unsure_image(tmp_path: Path) -> None:
    off = CaptureParams()
    assert not off.enabled and not off.wants(0.1, 0.0)
    unsure = CaptureParams(below_confidence=0.6)
    assert unsure.wants(0.59, 0.99) and not unsure.wants(0.61, 0.0)
    sampled = CaptureParams(fraction=0.25)
    assert sampled.wants(0.99, 0.2) and not sampled.wants(0.99, 0.3)
    store = CaptureStore(str(tmp_path / "captures"))
    key = store.key("abc", "JPEG")
    store.put(key, b"bytes")
    assert store.read(key) == b"bytes" and key.endswith("/abc.jpg")
    assert list(store.days()) == [(f"{datetime.now(UTC):%Y-%m-%d}", [key])]


def test_captures_go_to_the_team_bucket_when_there_is_a_team_stack(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "params.yaml").write_text("serve:\n  capture:\n    fraction: 0.1\n")
    project = Project(tmp_path)
    serve = project.params().serve
    monkeypatch.delenv(S3_URL_ENV, raising=False)
    assert project.capture_store(serve) == str(tmp_path / "monitoring" / "captures")
    monkeypatch.setenv(S3_URL_ENV, "s3://team-bucket/")
    assert project.capture_store(serve) == "s3://team-bucket/monitoring/captures"
    pinned = serve.model_copy(update={"capture": serve.capture.model_copy(update={"store": "s3://elsewhere/x/"})})
    assert project.capture_store(pinned) == "s3://elsewhere/x"


def test_a_holdout_leaves_val_and_test_as_they_were_and_train_keeps_an_image_per_class() -> None:
    labels = pd.Series(np.repeat(["a", "b", "c"], [100, 40, 4]))
    without = split_dataset(labels, 0.15, 0.15, seed=7)
    held = split_dataset(labels, 0.15, 0.15, seed=7, holdout_fraction=0.3)
    for name in ("val", "test"):
        assert (held == name).equals(without == name)
    assert (held[labels == "a"] == HOLDOUT).sum() == 30 and (held[labels == "b"] == HOLDOUT).sum() == 12
    assert (held[labels == "c"] == HOLDOUT).sum() == 1 and (held[labels == "c"] == "train").sum() == 1
