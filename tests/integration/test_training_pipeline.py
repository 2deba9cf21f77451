"""The user's path through the CLI on a fresh checkout: real ZenML (SQLite store), real MLflow
(SQLite store) and a real git repo, each command in its own process as a user would run it."""

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import mlflow
import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from cvops.cli.shapes import schema
from cvops.config import Project, load_params
from cvops.data.versioning import data_version
from tests.checkouts import new_checkout
from tests.cli import assert_one_line_error, clean_env, cvops
from tests.conftest import SMALL_RUN, write_image_folder
from tests.docs import assert_every_mlflow_name_is_documented
from tests.server import free_port, stopped_on_exit

pytestmark = pytest.mark.slow
SMALL = ["--overlay", str(SMALL_RUN)]
# What a user need not read, which `cvops run training` used to print at every step; and progress bars,
# which belong on a terminal, not in a log ("%|" is a bar's frame)
NOISE = (
    "Failed to disable MLflow autologging",
    "PydanticJsonSchemaWarning",
    "exercising caution",
    "No unused functions to remove",
    "Adding BentoML requirement",
    "%|",
)


@pytest.fixture(scope="module")
def trained_project(
    trained_digits, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of the session's checkout that ran `make demo DATASET=digits` (init, then the training pipeline on
    the small run: the overlay names digits, DVC imports them), and what that training printed."""
    return trained_digits.copy(tmp_path_factory.mktemp("trained") / "checkout"), trained_digits.training


def test_training_needs_init(tmp_path: Path) -> None:
    root = new_checkout(tmp_path / "checkout")
    assert_one_line_error(cvops(root, "run", "training"), 4, "cvops init")


def test_init_runs_again_on_a_trained_checkout_and_keeps_what_it_registered(trained_project) -> None:
    root, _ = trained_project  # its first `cvops init` made the checkout the session's fixture trained in
    again = cvops(root, "init")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ZenML stack 'cvops-local' active" in again.stdout
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    assert client.get_model_version("cvops-classifier", "1").tags["gate"] == "passed"


def test_the_overlay_trains_the_small_run_and_leaves_params_yaml_as_committed(trained_project) -> None:
    root, result = trained_project
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=root, capture_output=True, text=True)
    assert (root / "params.yaml").read_text() == committed.stdout  # `make demo DATASET=digits` leaves nothing
    assert "this run differs from the committed params.yaml:" in result.stdout
    assert "  train.model: resnet10t (committed: tf_efficientnet_lite0)" in result.stdout
    assert "  data.source: digits (committed: elpv)" in result.stdout


def test_the_run_prints_what_a_user_needs_and_no_library_noise(trained_project) -> None:
    _, result = trained_project
    output = result.stdout + result.stderr
    assert [phrase for phrase in NOISE if phrase in output] == []
    assert "then `cvops models promote 1 --reviewer NAME` (or reject)" in result.stdout  # a local store: typed name
    epochs = [line for line in output.splitlines() if " cvops.training: epoch " in line]
    assert [line.split("epoch ")[1].split(":")[0] for line in epochs] == [f"{i}/6" for i in range(1, 7)]
    assert "Traceback" not in output


def test_training_registers_a_version_with_metrics_and_lineage(trained_project) -> None:
    root, result = trained_project
    params = load_params(root / "params.yaml", overlay=SMALL_RUN)  # what the run used
    assert "test accuracy" in result.stdout and "version 1" in result.stdout

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    client = MlflowClient()
    version = client.get_model_version(params.registry.model_name, "1")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert version.tags["git_commit"] == head
    # a clean checkout: the overlay was params.yaml's only change while the run lasted, and the run records it
    assert version.tags["git_dirty"] == "false"
    overrides = json.loads(version.tags["overrides"])
    assert overrides["train.model"] == "resnet10t" and overrides["data.source"] == "digits"
    assert version.tags["params_hash"] == params.hash()
    assert version.tags["pipeline"] == "training"
    assert version.tags["zenml_run_id"]
    assert version.tags["data_version"] == data_version(Project(root))
    assert float(version.tags["accuracy"]) >= 0.8

    run = client.get_run(version.run_id)
    assert run.data.tags["params_hash"] == params.hash()
    lineage = {a.path for a in client.list_artifacts(run.info.run_id, "lineage")}
    assert lineage == {"lineage/params.yaml", "lineage/dvc.lock"}  # what `cvops models reproduce` starts from
    assert run.data.params["train.model"] == "resnet10t"
    assert run.data.metrics["test_accuracy"] == pytest.approx(float(version.tags["accuracy"]), abs=1e-4)
    m = run.data.metrics
    assert m["test_accuracy_ci95_low"] <= m["test_accuracy"] <= m["test_accuracy_ci95_high"]
    assert 0.0 <= m["test_ece"] <= 1.0
    curve = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in curve] == list(range(1, len(curve) + 1))
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")]
    assert {"evaluation/confusion_matrix.png", "evaluation/evaluation.json", "evaluation/gallery_unsure.png"} <= set(
        artifacts
    )
    assert ("evaluation/gallery_wrong.png" in artifacts) == (m["test_accuracy"] < 1)  # the gallery of its errors
    # the gate passed: challenger awaiting review, with its model card
    assert (version.tags["gate"], version.tags["approval"]) == ("passed", "pending")
    assert version.aliases == ["challenger"]
    assert run.data.metrics["gate_passed"] == 1.0
    card = Path(version.tags["model_card"].removeprefix("file://"))
    assert card.is_file() and card.with_suffix(".md").is_file()
    markdown = card.with_suffix(".md").read_text()
    for section in ("## Intended use", "## Slices", "## Errors", "## Gate", "## Known limitations", "## Lineage"):
        assert section in markdown
    assert version.tags["data_version"] in markdown and "data:image/png;base64," in card.read_text()
    # both ONNX files are attached; the shipped one carries the preprocessing a server needs
    from cvops.export.onnx_model import read_preprocessing

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


def test_models_list_and_show_print_json_of_their_committed_schemas(trained_project) -> None:
    root, _ = trained_project
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    tags = client.get_model_version("cvops-classifier", "1").tags
    listed = cvops(root, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    listing = json.loads(listed.stdout)
    jsonschema.validate(listing, schema("models-list"))
    (row,) = [row for row in listing["versions"] if row["version"] == "1"]
    assert (listing["model"], row["gate"], row["ships"]) == ("cvops-classifier", "passed", tags["shipped_format"])
    assert row["metrics"]["accuracy"] == pytest.approx(float(tags["accuracy"]))
    shown = cvops(root, "models", "show", "1", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    detail = json.loads(shown.stdout)
    jsonschema.validate(detail, schema("models-show"))
    assert detail["version"] == row and detail["gate"]["passed"] and detail["shipped"]["format"] == row["ships"]
    assert row["ships_score"] == pytest.approx(detail["shipped"]["accuracy"], abs=1e-4)  # the shipped file's own
    other = cvops(root, "models", "list", "--model", "cvops-detector")
    assert other.returncode == 0 and "cvops-detector has no versions yet" in other.stdout, other.stderr[-2000:]
    assert "registered model: cvops-detector; other registered models: cvops-classifier" in other.stdout


def test_registered_model_loads_and_predicts(trained_project) -> None:
    root, _ = trained_project
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    model = mlflow.pytorch.load_model("models:/cvops-classifier/1", map_location="cpu")
    import torch

    logits = model(torch.zeros(2, 3, 16, 16))
    assert logits.shape == (2, 10)


def test_reproduce_names_what_is_missing(trained_project, tmp_path: Path) -> None:
    root, _ = trained_project
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    commit = client.get_model_version("cvops-classifier", "1").tags["git_commit"]
    client.set_model_version_tag("cvops-classifier", "1", "git_commit", "0" * 40)
    try:
        assert_one_line_error(cvops(root, "models", "reproduce", "1"), 12, "0000000000", "git fetch")
    finally:
        client.set_model_version_tag("cvops-classifier", "1", "git_commit", commit)
    cache = root / ".dvc" / "cache"
    cache.rename(tmp_path / "cache")  # the data is in no cache, and was never pushed
    try:
        missing = cvops(root, "models", "reproduce", "1")
        assert_one_line_error(missing, 12, "neither the DVC cache nor the remote", "cvops data push")
    finally:
        (tmp_path / "cache").rename(cache)
    assert_one_line_error(cvops(root, "models", "reproduce", "9"), 8, "no version '9'")


def test_failed_gate_registers_evidence_but_no_challenger(trained_project) -> None:
    root, _ = trained_project
    promoted = cvops(root, "models", "promote", "1", "--reviewer", "alice", "--note", "first model")
    assert promoted.returncode == 0, promoted.stderr[-2000:]

    # one epoch: the gate fails all the same, and the run takes less time
    params_yaml = (root / "params.yaml").read_bytes()
    result = cvops(root, "run", "training", *SMALL, "-S", "gate.min_accuracy=0.999", "-S", "train.epochs=1")
    assert_one_line_error(result, 7, "version 2 failed its gate", "accuracy")
    assert "gate: FAILED" in result.stdout
    assert (root / "params.yaml").read_bytes() == params_yaml  # -S is for this run only

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
    unsure = shown.stdout.split("errors (test images")[1].split("right with the least confidence:\n")[1]
    assert unsure.startswith("    ") and "true " in unsure.splitlines()[0]  # the images a reviewer should look at
    assert_one_line_error(cvops(root, "models", "promote", "2", "--reviewer", "bob"), 9, "did not pass its gate")


def test_explain_writes_grad_cam_overlays_at_each_images_size_and_nothing_for_a_bad_file(
    trained_project, tmp_path: Path
) -> None:
    root, _ = trained_project
    images = sorted((root / "data" / "raw" / "3").iterdir())[:2]
    bigger = tmp_path / "big_3.png"  # a user's image at another size than the dataset's
    Image.open(images[0]).resize((40, 30)).save(bigger)
    result = cvops(root, "explain", "1", str(images[1]), str(bigger), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count(": 3 (") >= 1  # the class each overlay explains, as the model answers
    written = {path.name: Image.open(path).size for path in (tmp_path / "out").iterdir()}
    assert written == {f"{images[1].stem}.gradcam.png": Image.open(images[1]).size, "big_3.gradcam.png": (40, 30)}

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    refused = cvops(root, "explain", "1", str(images[0]), str(broken), "--output", str(tmp_path / "no"))
    assert_one_line_error(refused, 3, "broken.png", "not a readable image")
    assert not (tmp_path / "no").exists()  # nothing of a refused batch
    twin = tmp_path / "twin" / images[0].name  # two overlays would be one file
    twin.parent.mkdir()
    twin.write_bytes(images[0].read_bytes())
    assert_one_line_error(cvops(root, "explain", "1", str(images[0]), str(twin)), 2, "two images")
    assert_one_line_error(cvops(root, "explain", "7", str(images[0])), 8, "no version '7'")


def test_quantize_command_re_exports_a_version_and_records_what_ships(trained_project) -> None:
    root, _ = trained_project
    # the gate is decided again with params.yaml's: its leakage check off, as the digits overlay trained version 1
    result = cvops(root, "quantize", "1", "-S", "quantize.enabled=false", "-S", "gate.max_leakage=null")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ships onnx-fp32: int8 quantization is off" in result.stdout and "gate: PASSED" in result.stdout
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    tags = MlflowClient().get_model_version("cvops-classifier", "1").tags
    assert tags["shipped_format"] == "onnx-fp32" and "onnx_int8" not in tags
    assert tags["onnx_shipped"] == tags["onnx_fp32"] and Path(tags["onnx_fp32"].removeprefix("file://")).is_file()
    shown = cvops(root, "models", "show", "1")
    assert "ships onnx-fp32" in shown.stdout
    assert_one_line_error(cvops(root, "quantize", "9"), 8, "no version '9'")


def test_a_pruned_copy_is_measured_beside_the_model_gated_and_its_files_attached(trained_project) -> None:
    root, _ = trained_project
    pruning = ("-S", "prune.enabled=true", "-S", "prune.ratio=0.5", "-S", "prune.fine_tune_epochs=1")
    result = cvops(root, "quantize", "1", *pruning)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("onnx-")}
    assert rows == {"onnx-fp32", "onnx-int8", "onnx-pruned-fp32", "onnx-pruned-int8"}  # all measured together
    assert "onnx-pruned-fp32" in result.stdout.split("ships ", 1)[1] and "gate: " in result.stdout
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    tags = client.get_model_version("cvops-classifier", "1").tags
    for key in ("onnx_pruned_fp32", "onnx_pruned_int8"):
        assert Path(tags[key].removeprefix("file://")).is_file()
    assert tags["onnx_shipped"] == tags[tags["shipped_format"].replace("-", "_")]
    run = client.get_run(client.get_model_version("cvops-classifier", "1").run_id)
    assert run.data.metrics["pruned_parameters_after"] < run.data.metrics["pruned_parameters_before"] / 2
    again = cvops(root, "quantize", "1")  # pruning off again: no stale link to the pruned files
    assert again.returncode == 0, again.stderr[-2000:]
    assert not {"onnx_pruned_fp32", "onnx_pruned_int8"} & set(client.get_model_version("cvops-classifier", "1").tags)


def test_a_distilled_student_is_a_version_of_its_own_and_its_failed_gate_leaves_the_teachers_run_standing(
    trained_project, tmp_path: Path
) -> None:
    root, _ = trained_project
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    before = {v.version for v in client.search_model_versions("name = 'cvops-classifier'")}
    spec = yaml.safe_load(SMALL_RUN.read_text())
    overlay = tmp_path / "distill.yaml"
    overlay.write_text(yaml.safe_dump(spec | {"distill": {"enabled": True, "student": "mobilenetv3_smal"}}))
    refused = cvops(root, "run", "training", "--overlay", str(overlay))
    assert_one_line_error(refused, 2, "unknown timm model 'mobilenetv3_smal' in distill.student")  # before training
    assert {v.version for v in client.search_model_versions("name = 'cvops-classifier'")} == before

    # one epoch: a student far below the gate's 90%, beside a teacher far above it
    student = {"enabled": True, "student": "mobilenetv3_small_050", "epochs": 1}
    overlay.write_text(yaml.safe_dump(spec | {"distill": student, "gate": spec["gate"] | {"min_accuracy": 0.9}}))
    result = cvops(root, "run", "training", "--overlay", str(overlay))
    assert result.returncode == 0, result.stderr[-3000:]  # the teacher passed: the run stands
    made = sorted(
        (v for v in client.search_model_versions("name = 'cvops-classifier'") if v.version not in before),
        key=lambda v: int(v.version),
    )
    teacher, taught = made
    assert taught.tags["distilled_from"] == str(teacher.version) and taught.run_id != teacher.run_id
    assert (teacher.tags["gate"], taught.tags["gate"]) == ("passed", "failed") and "approval" not in taught.tags
    assert f"distilled student of version {teacher.version} (mobilenetv3_small_050)" in result.stdout
    assert f"the student, version {taught.version}, failed its gate" in result.stdout
    card = Path(taught.tags["model_card"].removeprefix("file://")).with_suffix(".md").read_text()
    distillation = card.split("## Distillation")[1].split("\n## ")[0]
    assert f"teacher v{teacher.version} (resnet10t)" in distillation
    assert "this version (mobilenetv3_small_050)" in distillation and "| test accuracy |" in distillation
    shown = cvops(root, "models", "show", str(taught.version))
    assert f"distilled from v{teacher.version}" in shown.stdout


def test_bad_input_gets_one_line_errors_and_distinct_codes(trained_project, tmp_path: Path) -> None:
    root, _ = trained_project
    raw_manifest = (root / "data" / "raw" / "manifest.csv").read_bytes()
    params_yaml = (root / "params.yaml").read_bytes()
    assert_one_line_error(cvops(root, "run", "training", "-S", "train.epohcs=3"), 2, "train.epohcs")
    assert_one_line_error(cvops(root, "run", "training", "-S", "train.lr=-1"), 2, "train.lr")
    # the user's own pieces are checked before anything runs: a module that is not there, a missing file
    own = ["-S", "train.model=shelf.net:build", "-S", "train.pretrained=none"]
    assert_one_line_error(cvops(root, "run", "training", *own), 2, "train.model: shelf.net:build: no module 'shelf'")
    missing = cvops(root, "run", "training", "-S", "train.augment=gone.yaml")
    assert_one_line_error(missing, 2, "train.augment: gone.yaml not found")
    assert_one_line_error(cvops(root, "data", "import", "folder", "--path", str(tmp_path / "nope")), 3, "nope")
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    assert_one_line_error(cvops(root, "data", "import", "folder", "--path", str(empty)), 3, "cat")
    # refused imports changed neither the dataset nor params.yaml, and left no staging folders behind
    assert (root / "data" / "raw" / "manifest.csv").read_bytes() == raw_manifest
    assert (root / "params.yaml").read_bytes() == params_yaml
    assert not [p for p in (root / "data").iterdir() if p.is_dir() and p.name.startswith(".")]
    assert cvops(root, "data", "import", "nonsense").returncode == 2


def test_invalid_data_stops_the_run_before_training(trained_project, tmp_path: Path) -> None:
    root, _ = trained_project
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    registered = client.search_model_versions("name = 'cvops-classifier'")
    images = write_image_folder(tmp_path / "images", {"cat": 12, "dog": 12})
    (images / "dog" / "broken.png").write_text("not an image")
    imported = cvops(root, "data", "import", "folder", "--path", str(images))
    assert imported.returncode == 0, imported.stderr[-2000:]

    result = cvops(root, "run", "training")
    assert result.returncode == 6, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "x decodes" in output and "dog/broken.png" in output
    assert "Traceback" not in output
    versions = client.search_model_versions("name = 'cvops-classifier'")
    assert len(versions) == len(registered)  # nothing trained, nothing registered


def test_ui_serves_the_projects_runs_and_stops_with_sigterm(trained_project) -> None:
    """SIGTERM to `cvops ui` (as systemd or `kill PID` sends it) stops the MLflow server behind it, which used
    to keep running, orphaned, on the port."""
    root, _ = trained_project
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "cvops.cli", "ui", "--port", str(port)],
        cwd=root,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=cvops"
    with stopped_on_exit(ui) as workers:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                assert ui.poll() is None, "cvops ui exited"
                assert time.monotonic() < deadline, "cvops ui did not answer within 90 s"
                time.sleep(1)
        assert body["experiment"]["name"] == "cvops"
        workers.extend(psutil.Process(ui.pid).children(recursive=True))
        assert workers  # the MLflow server and its workers run under cvops

        ui.send_signal(signal.SIGTERM)  # to cvops alone, not its group
        assert ui.wait(timeout=60) in (0, 128 + signal.SIGTERM)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=5)


def test_status_says_where_the_project_stands(trained_project) -> None:
    root, _ = trained_project
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    aliases = {alias: str(v) for alias, v in client.get_registered_model("cvops-classifier").aliases.items()}
    newest = max(int(v.version) for v in client.search_model_versions("name = 'cvops-classifier'"))
    result = cvops(root, "status", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    status = json.loads(result.stdout)
    jsonschema.validate(status, schema("status"))
    assert (status["task"], status["model"], status["stack"]) == ("classification", "cvops-classifier", "local")
    assert status["data_version"] == data_version(Project(root))
    assert {v["alias"]: v["version"] for v in status["versions"]} == {
        alias: version for alias, version in aliases.items() if alias in ("champion", "challenger")
    }
    assert status["last_training"]["model_version"] == str(newest) and status["last_monitoring"] is None
    shown = cvops(root, "status")
    assert f"version {newest}" in shown.stdout and "last training:" in shown.stdout, shown.stderr[-2000:]


def test_every_name_the_run_wrote_to_mlflow_is_in_the_reference(trained_project) -> None:
    root, _ = trained_project
    assert_every_mlflow_name_is_documented(root, "cvops-classifier")
