"""The user's path through the CLI on a fresh checkout: real ZenML (SQLite store), real MLflow
(SQLite store) and a real git repo, each command in its own process as a user would run it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from cvops.config import Project, load_params
from cvops.data.versioning import data_version
from tests.cli import assert_one_line_error, clean_env, cvops
from tests.conftest import TINY_OVERRIDES, write_image_folder

pytestmark = pytest.mark.slow
TINY_SET = [arg for override in TINY_OVERRIDES for arg in ("-S", override)]


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A checkout taken from nothing to a registered model, checking the refusals on the way."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("params.yaml", "dvc.yaml"):
        (root / name).write_text((Path(__file__).parents[2] / name).read_text())
    for command in (
        ["init", "-q"],
        ["add", "params.yaml", "dvc.yaml"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
    ):
        subprocess.run(["git", *command], cwd=root, check=True)

    assert_one_line_error(cvops(root, "run", "training"), 4, "cvops init")
    assert cvops(root, "init").returncode == 0
    again = cvops(root, "init")
    assert again.returncode == 0, again.stderr[-2000:]
    imported = cvops(root, "data", "import", "digits")
    assert imported.returncode == 0, imported.stderr[-2000:]
    trained = cvops(root, "run", "training", *TINY_SET)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return root, trained


def test_training_registers_a_version_with_metrics_and_lineage(trained_project) -> None:
    root, result = trained_project
    params = load_params(root / "params.yaml")  # -S overrides were written into it, as `dvc exp run -S` does
    assert params == load_params(root / "params.yaml", [*TINY_OVERRIDES, "data.source=digits"])
    assert "test accuracy" in result.stdout and "version 1" in result.stdout

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    client = MlflowClient()
    version = client.get_model_version(params.registry.model_name, "1")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert version.tags["git_commit"] == head
    assert version.tags["git_dirty"] == "true"  # params.yaml differs from the commit
    assert version.tags["params_hash"] == params.hash()
    assert version.tags["pipeline"] == "training"
    assert version.tags["zenml_run_id"]
    assert version.tags["data_version"] == data_version(Project(root))
    assert float(version.tags["accuracy"]) >= 0.8

    run = client.get_run(version.run_id)
    assert run.data.tags["params_hash"] == params.hash()
    assert run.data.params["train.model"] == "resnet10t"
    assert run.data.metrics["test_accuracy"] == pytest.approx(float(version.tags["accuracy"]), abs=1e-4)
    m = run.data.metrics
    assert m["test_accuracy_ci95_low"] <= m["test_accuracy"] <= m["test_accuracy_ci95_high"]
    assert 0.0 <= m["test_ece"] <= 1.0
    curve = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in curve] == list(range(1, len(curve) + 1))
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")]
    assert {"evaluation/confusion_matrix.png", "evaluation/evaluation.json"} <= set(artifacts)
    # the gate passed: challenger awaiting review, with its model card
    assert (version.tags["gate"], version.tags["approval"]) == ("passed", "pending")
    assert version.aliases == ["challenger"]
    assert run.data.metrics["gate_passed"] == 1.0
    card = Path(version.tags["model_card"].removeprefix("file://"))
    assert card.is_file() and card.with_suffix(".md").is_file()
    markdown = card.with_suffix(".md").read_text()
    for section in ("## Intended use", "## Slices", "## Gate", "## Known limitations", "## Lineage"):
        assert section in markdown
    assert version.tags["data_version"] in markdown and "data:image/png;base64," in card.read_text()
    # both ONNX files are attached; the shipped one carries the preprocessing a server needs
    from cvops.onnx_model import read_preprocessing

    assert version.tags["shipped_format"] in ("onnx-fp32", "onnx-int8") and "## Deployment artifact" in markdown
    onnx_files = {fmt: Path(version.tags[fmt].removeprefix("file://")) for fmt in ("onnx_fp32", "onnx_int8")}
    assert all(path.is_file() for path in onnx_files.values())
    shipped = Path(version.tags["onnx_shipped"].removeprefix("file://"))
    assert read_preprocessing(shipped).class_names == [str(d) for d in range(10)]
    assert run.data.metrics["onnx_parity_max_abs_diff"] < 1e-3
    # a passing version is packaged: its ONNX file in BentoML's store, a bento to serve it
    bento_name, bento_version = version.tags["bento"].split(":")
    assert (root / "bentos" / "bentos" / bento_name / bento_version / "bento.yaml").is_file()
    validation = [a.path for a in client.list_artifacts(run.info.run_id, "validation")]
    assert {"validation/validation.json", "validation/validation.html"} <= set(validation)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == params.mlflow.experiment
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(root / "mlflow")
    assert not (root / "mlruns").exists()


def test_registered_model_loads_and_predicts(trained_project) -> None:
    root, _ = trained_project
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    model = mlflow.pytorch.load_model("models:/cvops-classifier/1", map_location="cpu")
    import torch

    logits = model(torch.zeros(2, 3, 16, 16))
    assert logits.shape == (2, 10)


def test_failed_gate_registers_evidence_but_no_challenger(trained_project) -> None:
    root, _ = trained_project
    promoted = cvops(root, "models", "promote", "1", "--reviewer", "alice", "--note", "first model")
    assert promoted.returncode == 0, promoted.stderr[-2000:]

    result = cvops(root, "run", "training", "-S", "gate.min_accuracy=0.999")
    assert_one_line_error(result, 7, "version 2 failed its gate", "accuracy")
    assert "gate: FAILED" in result.stdout

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    client = MlflowClient()
    failed = client.get_model_version("cvops-classifier", "2")
    assert failed.tags["gate"] == "failed" and "approval" not in failed.tags
    assert {k: str(v) for k, v in client.get_registered_model("cvops-classifier").aliases.items()} == {"champion": "1"}
    # the champion was scored again on the same test images: it scores what it scored when it was registered
    metrics = client.get_run(failed.run_id).data.metrics
    test_size = sum(v for k, v in metrics.items() if k.startswith("test_support_"))
    assert metrics["test_vs_champion_n"] == test_size
    champion_accuracy = float(client.get_model_version("cvops-classifier", "1").tags["accuracy"])
    assert metrics["test_vs_champion_champion_accuracy"] == pytest.approx(champion_accuracy, abs=1e-4)
    assert metrics["test_vs_champion_accuracy_difference"] == pytest.approx(
        metrics["test_accuracy"] - metrics["test_vs_champion_champion_accuracy"]
    )

    shown = cvops(root, "models", "show", "2")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "accuracy - champion v1" in shown.stdout and "FAIL" in shown.stdout
    assert_one_line_error(cvops(root, "models", "promote", "2", "--reviewer", "bob"), 9, "did not pass its gate")


def test_quantize_command_re_exports_a_version_and_records_what_ships(trained_project) -> None:
    root, _ = trained_project
    # (the previous test left gate.min_accuracy=0.999 in params.yaml, as -S does)
    result = cvops(root, "quantize", "--version", "1", "-S", "quantize.enabled=false", "-S", "gate.min_accuracy=0.8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ships onnx-fp32: int8 quantization is off" in result.stdout and "gate: PASSED" in result.stdout
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    tags = MlflowClient().get_model_version("cvops-classifier", "1").tags
    assert tags["shipped_format"] == "onnx-fp32" and "onnx_int8" not in tags
    assert tags["onnx_shipped"] == tags["onnx_fp32"] and Path(tags["onnx_fp32"].removeprefix("file://")).is_file()
    shown = cvops(root, "models", "show", "1")
    assert "ships onnx-fp32" in shown.stdout
    assert_one_line_error(cvops(root, "quantize", "--version", "9"), 8, "no version '9'")


def test_bad_input_gets_one_line_errors_and_distinct_codes(trained_project, tmp_path: Path) -> None:
    root, _ = trained_project
    raw_manifest = (root / "data" / "raw" / "manifest.csv").read_bytes()
    assert_one_line_error(cvops(root, "run", "training", "-S", "train.epohcs=3"), 2, "train.epohcs")
    assert_one_line_error(cvops(root, "run", "training", "-S", "train.lr=-1"), 2, "train.lr")
    assert_one_line_error(cvops(root, "data", "import", "folder", "--path", str(tmp_path / "nope")), 3, "nope")
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    assert_one_line_error(cvops(root, "data", "import", "folder", "--path", str(empty)), 3, "cat")
    # refused imports changed neither the dataset nor params.yaml, and left no staging folders behind
    assert (root / "data" / "raw" / "manifest.csv").read_bytes() == raw_manifest
    assert load_params(root / "params.yaml").data.source == "digits"
    assert not [p for p in (root / "data").iterdir() if p.is_dir() and p.name.startswith(".")]
    assert cvops(root, "data", "import", "nonsense").returncode == 2


def test_invalid_data_stops_the_run_before_training(trained_project, tmp_path: Path) -> None:
    root, _ = trained_project
    images = write_image_folder(tmp_path / "images", {"cat": 12, "dog": 12})
    (images / "dog" / "broken.png").write_text("not an image")
    imported = cvops(root, "data", "import", "folder", "--path", str(images))
    assert imported.returncode == 0, imported.stderr[-2000:]

    result = cvops(root, "run", "training")
    assert result.returncode == 6, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "x decodes" in output and "dog/broken.png" in output
    assert "Traceback" not in output
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    versions = MlflowClient().search_model_versions("name = 'cvops-classifier'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]  # nothing trained, nothing registered


def test_ui_serves_the_projects_runs(trained_project) -> None:
    root, _ = trained_project
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "cvops.cli", "ui", "--port", str(port)], cwd=root, env=clean_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=cvops"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, "cvops ui exited"
                assert time.monotonic() < deadline, "cvops ui did not answer within 90 s"
                time.sleep(1)
        assert body["experiment"]["name"] == "cvops"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
