"""What a predictions file holds: a classifier's row per image, a detector's row per box (and one row, without
a box, for an image with none), every file's error kept."""

import pandas as pd

from cvops.serving.batch import BOX_PREDICTION_COLUMNS, PREDICTION_COLUMNS, predictions_frame, predictions_table


def test_a_classifiers_file_has_a_row_per_image_in_path_order() -> None:
    rows = [
        {"path": "b.png", "request_id": "r2", "label": "cat", "score": 0.9},
        {"path": "a.txt", "error": "not a readable image"},
    ]
    table = predictions_table(predictions_frame(rows, "3"))
    assert tuple(table.columns) == PREDICTION_COLUMNS and table["path"].tolist() == ["a.txt", "b.png"]
    assert table["model_version"].tolist() == ["3", "3"] and pd.isna(table.loc[0, "label"])


def test_a_detectors_file_has_a_row_per_box_and_one_for_an_image_without_boxes() -> None:
    two = [
        {"box": [1.0, 2.0, 30.0, 40.0], "label": "7", "score": 0.9},
        {"box": [50.0, 5.0, 60.0, 25.0], "label": "1", "score": 0.4},
    ]
    rows = [
        {"path": "two.png", "request_id": "r1", "label": "7", "score": 0.9, "boxes": 2, "detections": two},
        {"path": "none.png", "request_id": "r2", "label": "", "score": 0.0, "boxes": 0, "detections": []},
        {"path": "bad.txt", "error": "not a readable image"},
    ]
    table = predictions_table(predictions_frame(rows, "5"))
    assert tuple(table.columns) == BOX_PREDICTION_COLUMNS
    assert table["path"].tolist() == ["bad.txt", "none.png", "two.png", "two.png"]
    boxes = table[table["path"] == "two.png"]
    assert boxes[["x1", "y1", "x2", "y2"]].to_numpy().tolist() == [[1, 2, 30, 40], [50, 5, 60, 25]]
    assert boxes["label"].tolist() == ["7", "1"] and boxes["request_id"].tolist() == ["r1", "r1"]
    empty, bad = table[table["path"] == "none.png"].iloc[0], table[table["path"] == "bad.txt"].iloc[0]
    assert empty["request_id"] == "r2" and pd.isna(empty["label"]) and pd.isna(empty["x1"]) and pd.isna(empty["error"])
    assert bad["error"] == "not a readable image" and pd.isna(bad["x1"])
    assert (table["model_version"] == "5").all()
