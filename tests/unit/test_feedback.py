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
    TRUE_BOXES,
    TRUE_LABEL,
    FeedbackStore,
    UnknownRequest,
    attach_feedback,
    find_requests,
    give_box_feedback,
    give_feedback,
    labelled_window,
    new_request_id,
    read_boxes_csv,
    read_labels_csv,
)
from cvops.serving.inference_log import InferenceLog, LogTarget
from cvops.tasks.detection.monitor import live_quality as live_map

CLASSES = ["cat", "dog"]


def served(target: LogTarget, n: int, arm: str = "champion", status: int = 200) -> list[str]:
    """Log `n` answers as the service does (waiting until they are written), of 64x48 images; their request ids."""
    ids = [new_request_id() for _ in range(n)]
    log = InferenceLog(target)
    answer = {"model_version": "1", "label": "cat", "score": 0.9, "width": 64, "height": 48}
    rows = ({"request_id": i, "arm": arm, "status": status, **answer} for i in ids)
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


def test_a_detectors_true_boxes_are_checked_against_the_image_and_recorded(log_target: LogTarget) -> None:
    ids = served(log_target, 2)
    cat = {"box": [1, 2, 30, 40], "label": "cat"}
    wrong = [
        (
            [{"box": [0, 0, 65, 10], "label": "cat"}],
            FeedbackError,
            r"box 1: \[0, 0, 65, 10\] does not lie in the 64x48",
        ),
        ([cat, {"box": [5, 5, 4, 9], "label": "dog"}], FeedbackError, "box 2: .* x1 < x2"),
        ([{"box": [0, 0, 5, 5], "label": "cow"}], FeedbackError, "unknown label 'cow'"),
        ([{"box": [0, 0, "5", 5], "label": "cat"}], FeedbackError, r"give \{\"box\": \[x1, y1, x2, y2\]"),
        ({"box": [0, 0, 5, 5]}, FeedbackError, '"boxes" must be a list'),
    ]
    for boxes, error, says in wrong:
        with pytest.raises(error, match=says):
            give_box_feedback(log_target, {ids[0]: boxes}, CLASSES, "api")
    with pytest.raises(UnknownRequest):
        give_box_feedback(log_target, {new_request_id(): [cat]}, CLASSES, "api")
    assert FeedbackStore(log_target).labels() == {}  # nothing of a refused truth
    assert give_box_feedback(log_target, {ids[0]: [cat], ids[1]: []}, CLASSES, "import") == 2  # []: no object
    truths = labelled_window(log_target, None, None).set_index("request_id")[TRUE_BOXES].to_dict()
    assert truths == {ids[0]: [{"box": [1.0, 2.0, 30.0, 40.0], "label": "cat"}], ids[1]: []}


def test_a_box_file_has_a_line_per_box_and_a_bare_id_for_an_image_without() -> None:
    text = "request_id,label,x1,y1,x2,y2\na,cat,1,2,3,4\na,dog,5,6,7,8\nb,,,,,\n"
    assert read_boxes_csv(text, "f.csv") == {
        "a": [{"label": "cat", "box": [1.0, 2.0, 3.0, 4.0]}, {"label": "dog", "box": [5.0, 6.0, 7.0, 8.0]}],
        "b": [],
    }
    with pytest.raises(FeedbackError, match="first line must name the columns request_id,label,x1,y1,x2,y2"):
        read_boxes_csv("request_id,label\na,cat\n", "f.csv")
    with pytest.raises(FeedbackError, match="line 2: x1, y1, x2, y2 must be numbers"):
        read_boxes_csv("request_id,label,x1,y1,x2,y2\na,cat,1,2,three,4\n", "f.csv")


def boxes_window(found: int, missed: int) -> pd.DataFrame:
    """Answers of version 1, each for an image with one true cat: `found` of them found it, `missed` saw nothing."""
    n = found + missed
    cat = {"box": [10.0, 10.0, 40.0, 40.0], "label": "cat"}
    detections = [[cat | {"score": 0.9}] if i < found else [] for i in range(n)]
    rows = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "model_version": "1", "detections": detections})
    return attach_feedback(rows, {f"r{i}": {"boxes": [cat]} for i in range(n)})


def test_live_map_scores_the_logged_detections_against_the_true_boxes() -> None:
    params = MonitorParams(min_feedback=30, max_accuracy_drop=0.05)
    perfect = live_map(boxes_window(40, 0), "1", {"map": "0.8"}, params, seed=42)
    assert perfect.metric == "mAP" and perfect.status == "ok" and perfect.labelled == 40
    assert perfect.accuracy == pytest.approx(1.0) and perfect.low == pytest.approx(1.0)
    assert perfect.line.startswith("live mAP 1.000 [1.000, 1.000] on 40 labelled requests")
    assert perfect.metrics()["live_map"] == pytest.approx(1.0)
    half = live_map(boxes_window(20, 20), "1", {"map": "0.8"}, params, seed=42)  # half the cats never found
    assert half.status == "low" and half.accuracy == pytest.approx(0.5, abs=0.01) and half.high < 0.75
    assert "below test mAP 0.800" in half.reason
    assert live_map(boxes_window(20, 20), "1", {"map": "0.8"}, params, seed=42) == half  # seeded
    assert live_map(boxes_window(10, 0), "1", {"map": "0.8"}, params, seed=42).status == "not_enough_feedback"
