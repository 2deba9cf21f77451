"""Choosing what people label, reading their labels back, the production inbox's stable split, and retention."""

import io
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvops.config import Project, load_params
from cvops.data.labels import (
    Labelled,
    check_image,
    k_center,
    local_file_url,
    pick,
    read_labels,
    write_queue,
)
from cvops.data.production import stable_split
from cvops.env import DOCUMENT_ROOT_ENV
from cvops.errors import DataError, DataInvalidError, FeedbackError
from cvops.serving.capture import CAPTURE, CaptureStore
from cvops.stack.gc import captures, inference_log, reports

REPO = Path(__file__).resolve().parents[2]


def waiting(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "score": rng.uniform(0.3, 1.0, n),
            "label": "cat",
            "embedding": [list(rng.normal(size=4)) for _ in range(n)],
        }
    )


def test_uncertainty_takes_the_least_confident_and_random_is_seeded() -> None:
    rows = waiting(100)
    unsure = pick(rows, 10, "uncertainty", seed=1)
    assert unsure["score"].tolist() == sorted(rows["score"])[:10]
    assert pick(rows, 10, "random", seed=1).equals(pick(rows, 10, "random", seed=1))
    assert len(pick(rows, 500, "mixed", seed=1)) == 100  # never more than are waiting


def test_k_center_spreads_over_clusters_that_uncertainty_would_miss() -> None:
    far = np.array([[0.0, 0.0]] * 50 + [[10.0, 10.0]] * 3 + [[-10.0, 10.0]] * 3)
    chosen = k_center(
        far + np.random.default_rng(0).normal(scale=0.01, size=far.shape), 3, [], np.random.default_rng(0)
    )
    assert {int(i) // 50 if i < 50 else 1 + (int(i) - 50) // 3 for i in chosen} == {0, 1, 2}  # one from each cluster
    rows = waiting(60)
    mixed = pick(rows, 20, "mixed", seed=3)
    assert mixed["request_id"].is_unique and len(mixed) == 20
    assert set(mixed["request_id"][:8]) == set(pick(rows, 8, "uncertainty", seed=3)["request_id"])  # 40% unsure


def given(path: Path) -> dict[str, tuple[str, str]]:
    """The labels of a captures batch's file, with their labellers."""
    key, labels = read_labels(path)
    assert key == "request_id"
    return {i: (got.label, got.labeller) for i, got in labels.items()}


def test_labels_come_back_from_a_csv_or_a_label_studio_export(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("request_id,label,labeller\na,cat,ann\nb,dog,\n")
    assert given(csv) == {
        "a": ("cat", "ann"),
        "b": ("dog", ""),
    }
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            [
                {
                    "data": {"request_id": "a"},
                    "annotations": [{"completed_by": {"email": "ann@x"}, "result": [{"value": {"choices": ["cat"]}}]}],
                },
                {
                    "data": {"request_id": "b"},
                    "annotations": [{"was_cancelled": True, "result": [{"value": {"choices": ["x"]}}]}],
                },
                {"data": {"request_id": "c"}, "annotations": []},
            ]
        )
    )
    assert given(export) == {"a": ("cat", "ann@x")}
    export.write_text("[]")
    with pytest.raises(FeedbackError, match="no completed annotation"):
        read_labels(export)
    export.write_text("{not json")
    with pytest.raises(FeedbackError, match="is not JSON"):
        read_labels(export)


def test_a_suspect_batchs_reviews_come_back_keyed_by_the_datas_paths(tmp_path: Path) -> None:
    csv = tmp_path / "reviewed.csv"
    csv.write_text("path,label\ncat/1.png,dog\n")
    key, labels = read_labels(csv)
    assert key == "path" and labels == {"cat/1.png": Labelled("dog")}
    annotation = {"completed_by": {"email": "ann@x"}, "updated_at": "2026-12-08T10:00:00Z"}
    export = tmp_path / "export.json"
    reviewed = [
        {"data": {"path": "cat/1.png"}, "annotations": [annotation | {"result": [{"value": {"choices": ["dog"]}}]}]}
    ]
    export.write_text(json.dumps(reviewed))
    key, labels = read_labels(export)
    assert key == "path" and labels == {"cat/1.png": Labelled("dog", "ann@x", "2026-12-08T10:00:00Z")}
    captured = {"data": {"request_id": "r1"}, "annotations": [{"result": [{"value": {"choices": ["cat"]}}]}]}
    export.write_text(json.dumps([*reviewed, captured]))
    with pytest.raises(FeedbackError, match="mixes captured requests and the data's images"):
        read_labels(export)


def test_an_image_that_would_fail_validation_is_refused_before_it_joins_the_data() -> None:
    params = load_params(REPO / "params.yaml").validation
    with pytest.raises(DataInvalidError, match=r"does not decode.*nothing imported"):
        check_image(b"\x89PNG not really", "the capture of request r1", params)
    tiny = io.BytesIO()
    Image.new("L", (4, 4)).save(tiny, format="PNG")
    with pytest.raises(DataInvalidError, match="4x4 L fails validate"):
        check_image(tiny.getvalue(), "the capture of request r2", params)


def test_a_queue_never_overwrites_a_batch(tmp_path: Path) -> None:
    (tmp_path / "batch").mkdir()
    with pytest.raises(DataError, match="exists: give a new --output folder"):
        write_queue(waiting(3), CaptureStore(str(tmp_path / "captures")), tmp_path / "batch", ["cat"], "label")


def test_a_production_image_keeps_its_split_whatever_else_is_added() -> None:
    digests = pd.Series([f"{i:064x}" for i in range(2000)])
    alone = stable_split(digests[:100], 0.15, 0.15, seed=42)
    among_more = stable_split(digests, 0.15, 0.15, seed=42)
    assert alone.equals(among_more[:100])
    shares = among_more.value_counts(normalize=True)
    assert abs(shares["test"] - 0.15) < 0.03 and abs(shares["val"] - 0.15) < 0.03
    assert not stable_split(digests, 0.15, 0.15, seed=7).equals(among_more)  # seeded


def test_gc_lists_what_is_past_retention_and_deletes_only_that(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    project = Project(tmp_path)
    params = load_params(tmp_path / "params.yaml")
    store = CaptureStore(project.capture_store(params.serve))
    store.put("2020-01-01/old.png", b"x")
    today = store.keep("new", "PNG", b"y")
    log_dir = tmp_path / params.serve.inference_log
    (log_dir / "feedback").mkdir(parents=True)
    for path in (
        log_dir / "2020-01-01.jsonl",
        log_dir / "feedback" / "2020-01-01.jsonl",
        log_dir / f"{today[:10]}.jsonl",
    ):
        path.write_text("{}\n")
    old_report, new_report = (tmp_path / params.monitor.reports / name for name in ("old", "new"))
    for folder in (old_report, new_report):
        folder.mkdir(parents=True)
    week_ago = time.time() - 7 * 86400
    os.utime(old_report, (week_ago, week_ago))
    cutoff = datetime.now(UTC) - timedelta(days=1)

    found = [
        captures(project, params, cutoff),
        inference_log(project, params, cutoff),
        reports(project, params, cutoff),
    ]
    assert [g.items for g in found] == [
        ["2020-01-01/ (1 images)"],
        [f"{params.serve.inference_log}/2020-01-01.jsonl", f"{params.serve.inference_log}/feedback/2020-01-01.jsonl"],
        [f"{params.monitor.reports}/old"],
    ]
    old_capture = Path(store.location) / "2020-01-01" / "old.png"
    assert old_capture.is_file()  # listing deletes nothing
    for garbage in found:
        garbage.delete()
    assert not old_capture.exists() and store.read(today) == b"y"
    assert sorted(p.name for p in log_dir.rglob("*.jsonl")) == [f"{today[:10]}.jsonl"]
    assert not old_report.exists() and new_report.exists()


def test_label_studio_exports_json_and_json_min_name_the_labeller_by_email(tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    numeric = {"completed_by": 7, "created_username": " ann@x, 7", "result": [{"value": {"choices": ["cat"]}}]}
    export.write_text(json.dumps([{"data": {"request_id": "a"}, "annotations": [numeric]}]))  # Label Studio 1.23
    assert given(export) == {"a": ("cat", "ann@x")}
    flat = [{"image": "/data/local-files/?d=x.png", "request_id": "b", "id": 3, "label": "dog", "annotator": "bo@x"}]
    export.write_text(json.dumps(flat))  # the JSON_MIN export: one flat row per task
    assert given(export) == {"b": ("dog", "bo@x")}


def test_tasks_name_images_relative_to_label_studios_document_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DOCUMENT_ROOT_ENV, str(tmp_path))
    image = tmp_path / "round 1" / "images" / "größe.png"
    assert local_file_url(image) == "/data/local-files/?d=round%201/images/gr%C3%B6%C3%9Fe.png"
    with pytest.raises(DataError, match="outside Label Studio's document root"):
        local_file_url(Path("/elsewhere/a.png"))
    monkeypatch.delenv(DOCUMENT_ROOT_ENV)  # Label Studio's default root: /
    assert local_file_url(image) == f"/data/local-files/?d={quote(str(image.resolve())[1:])}"


def test_label_studio_commands_say_what_is_missing_in_one_line(project_dir: Path, tmp_path: Path) -> None:
    from tests.cli import assert_one_line_error, cvops

    batch = tmp_path / "batch"
    batch.mkdir()
    unreachable = {"LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "0" * 40}
    assert_one_line_error(cvops(project_dir, "labels", "studio", str(batch)), 2, "set LABEL_STUDIO_API_KEY")
    assert_one_line_error(
        cvops(project_dir, "labels", "studio", str(batch), env=unreachable), 3, "not a `cvops labels queue` batch"
    )
    (batch / "label_config.xml").write_text("<View/>")
    (batch / "label_studio.json").write_text("[]")
    assert_one_line_error(
        cvops(project_dir, "labels", "studio", str(batch), env=unreachable), 10, "does not answer", "LABEL_STUDIO_URL"
    )


def test_a_box_queue_draws_the_detectors_boxes_and_its_export_comes_back_in_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DOCUMENT_ROOT_ENV, str(tmp_path))
    store = CaptureStore(str(tmp_path / "captures"))
    found = [
        {"box": [20.0, 10.0, 60.0, 50.0], "label": "7", "score": 0.9},
        {"box": [0, 0, 8, 4], "label": "1", "score": 0.3},
    ]
    row = {"request_id": "r1", "label": "7", "score": 0.9, "width": 80, "height": 40, "detections": found}
    chosen = pd.DataFrame([row | {CAPTURE: store.keep("r1", "PNG", b"png")}])
    batch = write_queue(chosen, store, tmp_path / "batch", ["1", "7"], "boxes")
    assert (
        '<RectangleLabels name="label" toName="image"><Label value="1"/><Label value="7"/>'
        in (batch / "label_config.xml").read_text()
    )
    (task,) = json.loads((batch / "label_studio.json").read_text())
    drawn = task["predictions"][0]["result"]
    assert drawn[0]["value"] | {"rectanglelabels": None} == {
        "x": 25.0,
        "y": 25.0,
        "width": 50.0,
        "height": 100.0,
        "rotation": 0,
        "rectanglelabels": None,
    }
    # the labeller keeps the first box, drops the second (a false one) and adds a missed digit
    added = drawn[0] | {"value": drawn[0]["value"] | {"x": 75.0, "width": 12.5, "rectanglelabels": ["1"]}}
    task["annotations"] = [{"completed_by": {"email": "ann@x"}, "result": [drawn[0], added]}]
    empty = {"data": {"request_id": "r2"}, "annotations": [{"completed_by": {"email": "ann@x"}, "result": []}]}
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task, empty]))
    key, labels = read_labels(export)
    assert key == "request_id" and labels["r1"].labeller == "ann@x"
    assert labels["r1"].boxes == [
        {"box": [20.0, 10.0, 60.0, 50.0], "label": "7"},
        {"box": [60.0, 10.0, 70.0, 50.0], "label": "1"},
    ]
    assert labels["r2"].boxes == []  # nothing drawn: the image holds no digit
    turned = drawn[0] | {"value": drawn[0]["value"] | {"rotation": 30}}
    task["annotations"] = [{"result": [turned]}]
    export.write_text(json.dumps([task]))
    with pytest.raises(FeedbackError, match="a rectangle without the image's size, or rotated"):
        read_labels(export)
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text("request_id,label,x1,y1,x2,y2\nr1,7,20,10,60,50\nr2,,,,,\n")
    assert read_labels(boxes_csv)[1] == {
        "r1": Labelled("", boxes=[{"label": "7", "box": [20.0, 10.0, 60.0, 50.0]}]),
        "r2": Labelled("", boxes=[]),
    }
