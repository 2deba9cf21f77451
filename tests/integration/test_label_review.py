"""Suspected label errors through the label loop, on a copy of the session's trained digits project (git, DVC):
`cvops labels queue --strategy suspect` writes the audit's suspects as a review batch, a reviewer's Label Studio
export of it comes back through `cvops labels import`, and the data's labels are corrected in a new data version
with their provenance, every image keeping its split."""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cvops.data.manifest import load_manifest
from tests.cli import assert_one_line_error, cvops
from tests.conftest import TrainedCheckout

pytestmark = pytest.mark.slow
REVIEWER, REVIEWED_AT = "rev@example.com", "2026-12-08T09:30:00.000000Z"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def manifest(root: Path, stage: str) -> pd.DataFrame:
    return load_manifest(root / "data" / stage / "manifest.csv").set_index("sha256")


def export(batch: Path, answers: list[str], out: Path) -> Path:
    """What Label Studio's JSON export of the batch holds once a reviewer chose `answers`, one per task in order
    (`cvops labels pull` writes the reviewer as a user object with an email)."""
    tasks = json.loads((batch / "label_studio.json").read_text())
    for task, answer in zip(tasks, answers, strict=True):
        result = {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [answer]}}
        reviewer = {"id": 1, "email": REVIEWER}
        task["annotations"] = [{"completed_by": reviewer, "updated_at": REVIEWED_AT, "result": [result]}]
    out.write_text(json.dumps(tasks))
    return out


def test_suspected_labels_are_reviewed_and_corrected_in_a_new_data_version_keeping_every_split(
    trained_digits: TrainedCheckout, tmp_path: Path
) -> None:
    root = trained_digits.copy(tmp_path / "project")
    ok(cvops(root, "params", "set", "data.source=digits", "prepare.image_size=16"))  # the data it was trained on
    batch = tmp_path / "suspects"
    queued = ok(cvops(root, "labels", "queue", "--strategy", "suspect", "--n", "5", "--output", str(batch)))
    assert "images whose label the data audit suspects" in queued
    tasks = pd.read_csv(batch / "tasks.csv", dtype=str)
    audit = json.loads((root / "reports" / "audit.json").read_text())
    likeliest = [issue["path"] for issue in audit["label_issues"][: len(tasks)]]
    assert len(tasks) >= 2 and tasks["path"].tolist() == likeliest  # likeliest wrong first
    assert (tasks["given"] != tasks["suspected"]).all() and all((batch / p).is_file() for p in tasks["image"])
    studio = json.loads((batch / "label_studio.json").read_text())
    assert [t["predictions"][0]["result"][0]["value"]["choices"] for t in studio] == [[s] for s in tasks["suspected"]]
    assert "given: $given, suspected: $suspected" in (batch / "label_config.xml").read_text()

    lock, before = (root / "dvc.lock").read_text(), manifest(root, "prepared")
    wrong = export(batch, ["cat", *tasks["suspected"][1:]], tmp_path / "wrong.json")
    assert_one_line_error(cvops(root, "labels", "import", str(wrong)), 14, "unknown label 'cat'", "nothing imported")
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("path,label\n3/not-in-the-data.png,5\n")
    assert_one_line_error(cvops(root, "labels", "import", str(elsewhere)), 14, "is not an image of data/raw")
    assert (root / "dvc.lock").read_text() == lock and not (root / "data" / "production" / "corrections.csv").exists()

    # the reviewer agrees with the audit but for the last image, whose given label they keep
    answers = [*tasks["suspected"][:-1], tasks["given"].iloc[-1]]
    imported = ok(cvops(root, "labels", "import", str(export(batch, answers, tmp_path / "reviewed.json"))))
    assert f"corrected {len(tasks) - 1} labels, kept 1" in imported and "git commit -m 'reviewed labels'" in imported
    assert (root / "dvc.lock").read_text() != lock

    raw, after = manifest(root, "raw"), manifest(root, "prepared")
    reviewed = before.reset_index().set_index("path").loc[tasks["path"], "sha256"]
    corrected = raw.loc[reviewed]
    assert corrected["label"].tolist() == answers and corrected["label_before"].tolist() == tasks["given"].tolist()
    assert set(corrected["reviewed_by"]) == {REVIEWER} and set(corrected["reviewed_at"]) == {REVIEWED_AT}
    assert raw["label_before"].notna().sum() == len(tasks)  # no other image touched
    assert after.loc[before.index, "split"].equals(before["split"])  # every image keeps its split
    assert after.loc[reviewed, "label"].tolist() == answers
    history = pd.read_csv(root / "data" / "production" / "corrections.csv", dtype=str)
    assert history[["path", "label", "label_before"]].values.tolist() == [
        [path, label, given] for path, label, given in zip(tasks["path"], answers, tasks["given"], strict=True)
    ]
