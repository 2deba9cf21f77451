"""Comparing two batch-inference outputs: the same rows, image for image, whatever engine or storage made them."""

import pandas as pd

from cvops.serving.batch import PREDICTION_COLUMNS


def same_predictions(found: pd.DataFrame, expected: pd.DataFrame) -> None:
    """One row per file of `expected`, no more, each with its label, score (to onnxruntime's noise), error or
    not, and model version."""
    assert tuple(found.columns) == PREDICTION_COLUMNS
    assert found["path"].is_unique and set(found["path"]) == set(expected["path"])
    merged = expected.merge(found, on="path", suffixes=("", "_found"))
    assert (merged["label"].fillna("") == merged["label_found"].fillna("")).all()
    assert (merged["score"] - merged["score_found"]).abs().max() < 1e-5
    assert (merged["error"].isna() == merged["error_found"].isna()).all()
    assert (merged["model_version"] == merged["model_version_found"]).all()
