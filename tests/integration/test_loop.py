"""The production loop end to end on digits, each command in its own process on a real checkout (git, DVC,
ZenML, MLflow, a BentoML server, a Label Studio server): rotated production traffic with capture on and 30%
feedback -> monitoring sees live accuracy fall and drift -> a label queue -> a Label Studio project, labelled
there from the truth file -> its export pulled back -> a new data version -> a retraining on it whose `recent`
slice beats the old champion on the same images."""

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from cvops.config import Project, load_params
from cvops.data.manifest import load_manifest
from cvops.data.production import PRODUCTION, stable_split
from cvops.monitoring.drift import VERDICT_FILE, DriftVerdict
from cvops.registry.evidence import load_evidence
from cvops.serving.feedback import FeedbackStore
from cvops.stack.web import http_json
from tests.checkouts import new_checkout
from tests.cli import assert_one_line_error, cvops
from tests.conftest import REPO, SMALL_RUN
from tests.label_studio import LABELLER, LabelStudio
from tests.server import Server

pytestmark = pytest.mark.slow
SHIFT = ("--shift", "rotate", "--severity", "0.3")  # 27 degrees: measured to cut the digits champion to ~67%


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def prepared(root: Path) -> pd.DataFrame:
    return load_manifest(root / "data" / "prepared" / "manifest.csv")


def verdict_of(output: str) -> DriftVerdict:
    return DriftVerdict.model_validate_json((Path(output.split("report: ")[1].split()[0]) / VERDICT_FILE).read_text())


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """Label Studio, started before the checkout trains (its first start takes tens of seconds), serving the
    files under its document root, where the label queue goes."""
    server = LabelStudio(tmp_path_factory.mktemp("label-studio"), tmp_path_factory.mktemp("labelling"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits with 30% of each class held out of every split (production traffic no model has seen), and a
    first version that became champion without a reviewer."""
    overrides = ["registry.require_approval=false", "prepare.holdout_fraction=0.3", "monitor.cooldown_hours=0"]
    params = load_params(REPO / "params.yaml", overrides, overlay=SMALL_RUN)
    root = new_checkout(tmp_path_factory.mktemp("loop"), params, gitignore=True)
    ok(cvops(root, "init"))
    ok(cvops(root, "run", "training"))
    return root


def test_labelled_production_images_retrain_a_model_that_handles_the_shift(
    studio: LabelStudio, checkout: Path, tmp_path: Path
) -> None:
    root = checkout
    assert_one_line_error(cvops(root, "labels", "queue"), 3, "no captured images")
    lock_before, split_before = (root / "dvc.lock").read_text(), prepared(root)
    truth = tmp_path / "truth.csv"
    server = Server(root, "-S", "serve.capture.fraction=1.0")
    try:
        url = f"http://127.0.0.1:{server.port}"
        ok(
            cvops(
                root,
                "traffic",
                "--source",
                "holdout",
                *SHIFT,
                "--n",
                "400",
                "--feedback",
                "0.3",
                "--truth-out",
                str(truth),
                "--url",
                url,
            )
        )
    finally:
        server.stop()

    output = ok(cvops(root, "run", "monitoring", "--window", "400", "--no-retrain"))
    verdict = verdict_of(output)
    quality = verdict.quality
    assert quality is not None and quality.status == "low" and quality.labelled == 120, output
    assert quality.high is not None and quality.test_accuracy is not None and quality.high < quality.test_accuracy
    assert verdict.status == "drift" and f"{quality.line}: LOW" in output

    batch = studio.document_root / "batch"  # where Label Studio serves files from: the image URLs are relative to it
    ok(cvops(root, "labels", "queue", "--n", "200", "--output", str(batch), env=studio.document_env))
    tasks = pd.read_csv(batch / "tasks.csv", dtype={"request_id": str})
    assert len(tasks) == 200 and tasks["request_id"].is_unique and all((batch / p).is_file() for p in tasks["image"])
    project = Project(root)
    feedback = FeedbackStore(project.inference_log(project.params().serve)).labels()
    assert len(feedback) == 120 and not set(feedback) & set(tasks["request_id"])  # their labels came back already
    queued = json.loads((batch / "label_studio.json").read_text())
    assert len(queued) == 200 and queued[0]["predictions"][0]["result"][0]["value"]["choices"]

    offline_truth = tmp_path / "offline.csv"  # answers scored offline are never captured
    ok(cvops(root, "traffic", "--offline", "--n", "5", "--truth-out", str(offline_truth)))
    assert_one_line_error(cvops(root, "labels", "import", str(offline_truth)), 14, "was never captured")
    labels = tasks[["request_id"]].merge(pd.read_csv(truth, dtype=str), on="request_id").assign(labeller="tester")
    wrong = tmp_path / "wrong.csv"
    labels.assign(label="cat").to_csv(wrong, index=False)
    assert_one_line_error(cvops(root, "labels", "import", str(wrong)), 14, "unknown label 'cat'")
    assert (root / "dvc.lock").read_text() == lock_before  # nothing of a refused file
    # people label the batch in Label Studio: a project made from it, every task annotated (as the labelling UI
    # does, through the API) with the truth, and the export pulled back with a personal access token
    studio.wait()
    legacy = {"LABEL_STUDIO_URL": studio.url, "LABEL_STUDIO_API_KEY": studio.token}
    pushed = re.search(
        r"Label Studio project (\d+): 200 tasks", ok(cvops(root, "labels", "studio", str(batch), env=legacy))
    )
    assert pushed is not None
    number, authorization = pushed.group(1), f"Token {studio.token}"
    status, made = http_json(
        "GET", f"{studio.url}/api/projects/{number}/tasks?page_size=1000", authorization=authorization
    )
    assert status == 200 and len(made) == 200 and all(task["predictions"] for task in made)  # pre-annotated
    first = made[0]["data"]["image"]  # served from the batch's folder, by the URL `labels queue` wrote
    with urllib.request.urlopen(
        urllib.request.Request(studio.url + first, headers={"Authorization": authorization})
    ) as image:
        assert image.read() == (batch / "images" / first.rsplit("/", 1)[-1]).read_bytes()
    truth_of = labels.set_index("request_id")["label"]
    for task in made:
        choice = {"from_name": "label", "to_name": "image", "type": "choices"}
        answer = {"result": [choice | {"value": {"choices": [truth_of[task["data"]["request_id"]]]}}]}
        assert (
            http_json("POST", f"{studio.url}/api/tasks/{task['id']}/annotations", answer, authorization=authorization)[
                0
            ]
            == 201
        )
    status, personal = http_json("POST", f"{studio.url}/api/token/", authorization=authorization)
    assert status == 201, personal
    pulled = ok(cvops(root, "labels", "pull", number, env=legacy | {"LABEL_STUDIO_API_KEY": personal["token"]}))
    assert "exported 200 labelled tasks" in pulled and "added 200 labelled production images" in pulled
    assert "git add dvc.lock data/production.dvc" in pulled
    labelled = tmp_path / "labelled.csv"
    labels.to_csv(labelled, index=False)
    again = ok(cvops(root, "labels", "import", str(labelled)))  # the same labels from a CSV: nothing new
    assert "skipped 200 images the data already holds" in again and "nothing new" in again

    assert (root / "dvc.lock").read_text() != lock_before and (root / "data" / "production.dvc").is_file()
    after = prepared(root)
    production = after[after["source"] == PRODUCTION]
    assert len(production) == 200 and set(production["labeller"]) == {LABELLER}  # by email, not a user id
    assert production["split"].tolist() == stable_split(production["sha256"], 0.15, 0.15, 42).tolist()
    before = split_before.set_index("path")["split"]
    assert after.set_index("path").loc[before.index, "split"].equals(before)  # no earlier image moved
    recent = production[production["split"] == "test"]
    assert len(recent) >= 15

    output = ok(cvops(root, "run", "monitoring", "--window", "400"))  # the alarm goes on: now it retrains
    assert "retraining run" in output and "version 2" in output, output
    client = MlflowClient(project.tracking_uri)
    new, old = (client.get_model_version("cvops-classifier", v) for v in ("2", "1"))
    assert new.tags["data_version"] != old.tags["data_version"]
    assert json.loads(new.tags["data_counts"])[PRODUCTION]  # it was trained with the production images
    mlflow.set_tracking_uri(project.tracking_uri)
    evaluation, _, _ = load_evidence(new.run_id)
    comparison = evaluation.champion
    assert comparison is not None and comparison.recent_n == len(recent)
    assert comparison.candidate_recent_accuracy is not None and comparison.champion_recent_accuracy is not None
    assert comparison.candidate_recent_accuracy > comparison.champion_recent_accuracy, comparison
    assert any(piece.attribute == "recent" and piece.n == len(recent) for piece in evaluation.slices)
    card = Path(new.tags["model_card"].removeprefix("file://")).with_suffix(".md")
    assert "How the data grew" in card.read_text() and "| production |" in card.read_text()

    captured = Path(project.capture_store(project.params().serve))
    old_day = captured / "2020-01-01"
    old_day.mkdir()
    (old_day / "gone.png").write_bytes(b"x")
    listed = ok(cvops(root, "gc"))
    assert "captured images: 2020-01-01/ (1 images)" in listed and "dry run: nothing deleted" in listed
    assert "bentos and models of versions no alias names: nothing" in listed  # 2 is champion, 1 previous
    assert "DVC cache: " in listed and old_day.exists()
    assert "Removing" not in listed and len(listed.splitlines()) == 7  # one line per kind, nothing of DVC's own
    ok(cvops(root, "gc", "--apply"))
    assert not old_day.exists() and len(list(captured.glob("*/*.png"))) == 400  # today's captures stay
    status = ok(cvops(root, "data", "status"))  # the workspace's data is all still there
    assert "workspace matches dvc.lock" in status and "200 labelled production images" in status
