"""Ray as cvops's distributed engine, on a real two-node Ray cluster the test starts: training on Ray Train
(one DDP worker per node) gives a model as good as the in-process run's, resumes from its last checkpoint when
a node dies or fails with one line and registers nothing; batch inference on Ray Data gives the in-process
path's predictions image for image and loses and repeats no row when a node dies mid-run; videos tracked
on Ray Data give the in-process run's outputs, file for file; the embedded
default starts no Ray at all. Each command in its own process, as a user runs it."""

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pandas as pd
import psutil
import pytest
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient
from PIL import Image

from cvops.config import Project
from cvops.serving.inference_log import read_inference_log
from cvops.serving.video.output import VideoWriter
from cvops.training.on_ray import SNAPSHOT
from tests.cli import assert_one_line_error, clean_env, cvops
from tests.conftest import SMALL_RUN
from tests.predictions import same_predictions
from tests.ray_cluster import RayCluster, assert_all_gone, ray_cluster
from tests.server import free_port, stopped_on_exit

pytestmark = pytest.mark.slow
MODEL = "cvops-classifier"


@dataclass
class Checkout:
    root: Path
    ray_tmp: Path  # RAY_TMPDIR of every command the fixture ran: any Ray instance they started would be there
    local: pd.DataFrame  # the in-process engine's predictions for data/raw

    @property
    def images(self) -> Path:
        return self.root / "data" / "raw"

    def use(self, **distributed: object) -> None:
        Project(self.root).set_params([f"distributed.{key}={value}" for key, value in distributed.items()])

    def mlflow(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}")

    def versions(self) -> list[ModelVersion]:
        """The registered versions, oldest first."""
        found = self.mlflow().search_model_versions(f"name = '{MODEL}'")
        return sorted(found, key=lambda version: int(version.version))


@pytest.fixture(scope="module")
def checkout(trained_digits, tmp_path_factory: pytest.TempPathFactory) -> Checkout:
    """A copy of the session's checkout that ran `make demo DATASET=digits` (init, then the training pipeline on
    the digits overlay), then batch inference over the digits images with the default engine."""
    root = trained_digits.copy(tmp_path_factory.mktemp("distributed") / "project")
    output = root.parent / "local.parquet"
    score = ["run", "batch-inference", "--input", "data/raw", "--output", str(output), "--version", "1"]
    result = cvops(root, *score, env={"RAY_TMPDIR": str(trained_digits.ray_tmp)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return Checkout(root, trained_digits.ray_tmp, pd.read_parquet(output))


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with ray_cluster(cpus_per_node=2) as started:
        yield started


def test_the_embedded_default_starts_no_ray(checkout) -> None:
    # the demo's training and a default batch inference ran with RAY_TMPDIR here: a Ray start writes its session
    assert not checkout.ray_tmp.exists()
    assert len(checkout.local) == len([f for f in checkout.images.rglob("*") if f.is_file()])


def _command(checkout: Checkout, output: Path, *more: str) -> list[str]:
    return ["run", "batch-inference", "--input", str(checkout.images), "--output", str(output), "--version", "1", *more]


def _batch_inference(
    checkout: Checkout, output: Path, env: dict[str, str], *more: str
) -> subprocess.CompletedProcess[str]:
    return cvops(checkout.root, *_command(checkout, output, *more), env=env)


def test_batch_inference_on_a_two_node_cluster_equals_the_in_process_run(checkout, cluster, tmp_path: Path) -> None:
    # by the GCS address: through Ray Client (cluster.client_address, as a KubeRay step's pod connects), the
    # server Ray's proxy starts for the client exited at once, with empty logs, in 1 run of 4 under the
    # suite's load ("Initialization failure from server"); see the README
    checkout.use(engine="ray", address=cluster.address, batch_workers=2, cpus_per_worker=1.0)
    log = Project(checkout.root).inference_log(Project(checkout.root).params().serve)
    before = len(read_inference_log(log))
    output = tmp_path / "ray.parquet"

    result = _batch_inference(checkout, output, cluster.env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    found = pd.read_parquet(output)
    same_predictions(found, checkout.local)
    scored = found["error"].isna().sum()
    assert f"scored {scored} of {len(found)} files" in result.stdout
    assert len(read_inference_log(log)) == before + scored
    client = checkout.mlflow()
    (run,) = client.search_runs(client.get_experiment_by_name("cvops").experiment_id, "tags.engine = 'ray'")
    assert run.data.metrics["batch_images"] == len(found)


def _digits_video(checkout: Checkout, path: Path, labels: str) -> None:
    """A 64x64 clip at 10 frames a second, a second of each digit of `labels`, from the checkout's images."""
    writer = VideoWriter(path, 64, 64, 10)
    for index, label in enumerate(label for label in labels for _ in range(10)):
        image = Image.open(min((checkout.images / label).iterdir())).convert("RGB")
        writer.write(image.resize((64, 64), Image.Resampling.NEAREST), index / 10)
    writer.close()


def test_videos_on_the_cluster_give_the_in_process_runs_outputs(checkout, cluster, tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    clips = {"line-1": "3731", "line-2": "0", "line-3": "5599"}  # a second of each digit
    for name, labels in clips.items():
        _digits_video(checkout, folder / f"{name}.mp4", labels)
    (folder / "notes.mp4").write_text("not a video\n")
    every_frame = ["--version", "1", "-S", "video.log_fraction=1.0"]
    checkout.use(engine="local")
    log = Project(checkout.root).inference_log(Project(checkout.root).params().serve)
    before = len(read_inference_log(log))
    local = cvops(checkout.root, "run", "video", str(folder), "--output", str(tmp_path / "local"), *every_frame)
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-3000:]
    logged_here = len(read_inference_log(log)) - before
    checkout.use(engine="ray", address=cluster.address, batch_workers=2, cpus_per_worker=1.0)

    on_ray = cvops(
        checkout.root, "run", "video", str(folder), "--output", str(tmp_path / "ray"), *every_frame, env=cluster.env
    )
    assert on_ray.returncode == 0, on_ray.stdout[-2000:] + on_ray.stderr[-3000:]
    assert "3 of 4 videos, 90 frames" in on_ray.stdout and "notes.mp4: not a video FFmpeg can read" in on_ray.stdout
    for name, labels in clips.items():
        here, there = tmp_path / "local" / name, tmp_path / "ray" / name
        assert (there / "frames.jsonl").read_text() == (here / "frames.jsonl").read_text()
        assert (there / "segments.csv").read_text() == (here / "segments.csv").read_text()
        assert len(list(av.open(str(there / "annotated.mp4")).decode(video=0))) == 10 * len(labels)  # it plays
        summary = json.loads((there / "summary.json").read_text())
        assert summary["complete"] and summary["frames"] == json.loads((here / "summary.json").read_text())["frames"]
    assert not (tmp_path / "ray" / "notes").exists()
    assert len(read_inference_log(log)) - before == 2 * logged_here == 180
    client = checkout.mlflow()
    (run,) = client.search_runs(
        client.get_experiment_by_name("cvops").experiment_id, "tags.engine = 'ray' and tags.input LIKE '%recordings'"
    )
    assert run.data.metrics["video_frames"] == 90 and run.data.metrics["video_unreadable"] == 1


def test_a_cluster_too_small_for_the_workers_is_one_line(checkout, cluster, tmp_path: Path) -> None:
    # given as an --overlay for this run: params.yaml is the same afterwards
    overlay = tmp_path / "big.yaml"
    overlay.write_text(
        f"distributed: {{engine: ray, address: '{cluster.address}', batch_workers: 3, cpus_per_worker: 2.0}}\n"
    )  # 6 CPUs of 4, or of 2 once a node died
    params = (checkout.root / "params.yaml").read_bytes()
    result = _batch_inference(checkout, checkout.root.parent / "never.parquet", cluster.env, "--overlay", str(overlay))
    assert_one_line_error(result, 2, "logical CPUs", "distributed.batch_workers")  # not a wait for ever
    assert not (checkout.root.parent / "never.parquet").exists()
    assert (checkout.root / "params.yaml").read_bytes() == params


def _training_overlay(tmp_path: Path, cluster: RayCluster, train: dict[str, object], **distributed: object) -> Path:
    """The digits run's overlay with `train` on top, training on `cluster` with one worker per node (1.5 of a
    node's 2 CPUs each, so two never share one)."""
    spec = yaml.safe_load(SMALL_RUN.read_text())
    spec["train"] |= train
    spec["distributed"] = {
        "engine": "ray",
        "address": cluster.address,
        "train_workers": 2,
        "cpus_per_worker": 1.5,
        **distributed,
    }
    overlay = tmp_path / "ray-training.yaml"
    overlay.write_text(yaml.safe_dump(spec))
    return overlay


def _train_until_a_checkpoint_then_kill_a_node(
    checkout: Checkout, cluster: RayCluster, overlay: Path, tmp_path: Path, replace: bool
) -> subprocess.CompletedProcess[str]:
    """Start the training pipeline; once Ray Train has registered a checkpoint, kill a node with a worker on it
    (each node has one), and with `replace` start a new node in its place; returns the finished command."""
    started = time.time()
    command = [sys.executable, "-m", "cvops.cli", "run", "training", "--overlay", str(overlay)]
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=checkout.root, env=cluster.env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    with stopped_on_exit(process):
        deadline = time.monotonic() + 300
        while not [s for s in checkout.root.glob(f"checkpoints/*/{SNAPSHOT}") if s.stat().st_mtime > started]:
            assert process.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "Ray Train never registered a checkpoint"
            time.sleep(0.1)
        cluster.alive_workers[-1].kill()
        if replace:
            cluster.add_node()
        process.wait(timeout=600)
    return subprocess.CompletedProcess(command, process.returncode, out.read_text(), err.read_text())


def test_training_on_two_nodes_survives_a_node_and_matches_the_in_process_run(
    checkout, cluster, tmp_path: Path
) -> None:
    epochs = yaml.safe_load(SMALL_RUN.read_text())["train"]["epochs"]
    overlay = _training_overlay(tmp_path, cluster, {"early_stopping_patience": epochs}, max_failures=1)
    result = _train_until_a_checkpoint_then_kill_a_node(checkout, cluster, overlay, tmp_path, replace=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "resuming after epoch" in result.stderr  # Ray Train restarted the group from the last checkpoint

    local, ray = checkout.versions()[0], checkout.versions()[-1]
    run = checkout.mlflow().get_run(ray.run_id)
    expected = {"train_engine": "ray", "train_world_size": "2", "train_backend": "gloo"}
    assert {key: ray.tags[key] for key in expected} == expected  # from the live process group
    assert {key: run.data.tags[key] for key in expected} == expected
    assert (local.tags["train_engine"], local.tags["train_world_size"]) == ("local", "1")
    assert abs(float(ray.tags["accuracy"]) - float(local.tags["accuracy"])) <= 0.03  # within noise on 269 images
    history = checkout.mlflow().get_metric_history(ray.run_id, "val_accuracy")
    assert {point.step for point in history} == set(range(1, epochs + 1))  # every epoch trained, none lost


def test_a_node_dying_mid_training_without_retries_is_one_line_and_registers_nothing(
    checkout, cluster, tmp_path: Path
) -> None:
    versions = len(checkout.versions())
    overlay = _training_overlay(tmp_path, cluster, {"epochs": 8}, max_failures=0)
    doomed = cluster.node_id(cluster.alive_workers[-1])
    result = _train_until_a_checkpoint_then_kill_a_node(checkout, cluster, overlay, tmp_path, replace=False)
    # without the lines Ray forwards from its processes, "(RayTrainWorker pid=...) ...", tracebacks included
    own = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("("))
    assert_one_line_error(
        subprocess.CompletedProcess(result.args, result.returncode, result.stdout, own),
        10,
        "training on Ray failed",
        f"lost node {doomed[:12]}",
        "--resume",
    )
    assert len(checkout.versions()) == versions  # no half-trained model registered
    cluster.add_node()  # the next tests have two nodes again


def _scoring(processes: list[psutil.Process]) -> bool:
    """Whether one of `processes` is a scoring actor in the middle of a batch (Ray titles it `....submit`)."""
    for process in processes:
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "_Scorer" in title and ".submit" in title:
            return True
    return False


def test_a_node_dying_mid_run_loses_and_repeats_no_row(checkout, cluster, tmp_path: Path) -> None:
    # more files than the digits, so that the run is still going when the node dies
    folder = tmp_path / "incoming"
    for copy in range(4):
        for image in checkout.images.rglob("*.png"):
            target = folder / f"copy{copy}" / image.relative_to(checkout.images)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.hardlink_to(image)
    # half a CPU per actor: the head alone can hold both actors once the second node is gone
    checkout.use(engine="ray", address=cluster.address, batch_workers=2, cpus_per_worker=0.5)
    output = tmp_path / "ray.parquet"
    command = [
        sys.executable,
        "-m",
        "cvops.cli",
        "run",
        "batch-inference",
        "--input",
        str(folder),
        "--output",
        str(output),
        "--version",
        "1",
    ]
    logs = tmp_path / "cvops.log"
    with logs.open("w") as out:
        process = subprocess.Popen(
            command, cwd=checkout.root, env=cluster.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    with stopped_on_exit(process):
        second = cluster.alive_workers[-1]
        deadline = time.monotonic() + 300
        while not _scoring(second.processes()):  # until an actor on the second node works on a batch
            assert process.poll() is None, logs.read_text()[-3000:]
            assert time.monotonic() < deadline, "no scoring actor ever worked on the second node"
            time.sleep(0.05)
        second.kill()
        assert process.wait(timeout=600) == 0, logs.read_text()[-3000:]

    images = checkout.local[checkout.local["path"].str.endswith(".png")]
    expected = pd.concat([images.assign(path=f"copy{copy}/" + images["path"]) for copy in range(4)])
    same_predictions(pd.read_parquet(output), expected)
    cluster.wait_for_cpus(2)  # the head alone is left


def test_an_unreachable_cluster_is_one_line(checkout) -> None:
    checkout.use(engine="ray", address=f"127.0.0.1:{free_port()}")
    result = _batch_inference(checkout, checkout.root.parent / "never.parquet", clean_env())
    assert_one_line_error(result, 10, "Ray cluster", "distributed.address")
    assert not (checkout.root.parent / "never.parquet").exists()


def test_a_wrong_token_is_one_line_naming_the_token(checkout, cluster) -> None:
    checkout.use(engine="ray", address=cluster.address, batch_workers=1, cpus_per_worker=1.0)
    result = _batch_inference(
        checkout, checkout.root.parent / "never.parquet", cluster.env | {"RAY_AUTH_TOKEN": "0" * 32}
    )
    assert_one_line_error(result, 10, "RAY_AUTH_TOKEN", cluster.address)
    assert not (checkout.root.parent / "never.parquet").exists()


def test_a_local_ray_instance_is_started_for_the_command_and_stopped_after_it(checkout, tmp_path: Path) -> None:
    checkout.use(engine="ray", address="null", batch_workers=1, cpus_per_worker=1.0)
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths are under it
    try:
        output = tmp_path / "local-ray.parquet"
        result = _batch_inference(checkout, output, {"RAY_TMPDIR": str(ray_tmp)})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        same_predictions(pd.read_parquet(output), checkout.local)
        assert list(ray_tmp.glob("ray/session_*"))  # it did start Ray (the check of the default above can fail)
    finally:
        assert_all_gone(ray_tmp)  # ray.shutdown() stopped them (they may take a moment to exit)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_sigterm_stops_the_command_and_its_local_ray_instance(checkout, tmp_path: Path) -> None:
    checkout.use(engine="ray", address="null", batch_workers=1, cpus_per_worker=1.0)
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    command = [sys.executable, "-m", "cvops.cli", *_command(checkout, tmp_path / "never.parquet")]
    process = subprocess.Popen(
        command,
        cwd=checkout.root,
        env=clean_env() | {"RAY_TMPDIR": str(ray_tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        with stopped_on_exit(process):
            assert process.stdout is not None
            for line in process.stdout:  # until the instance has started and the command is connected to it
                if "connected to a local Ray instance" in line:
                    break
            else:
                raise AssertionError(f"the command ended before Ray started: exit {process.wait()}")
            process.send_signal(signal.SIGTERM)  # to cvops only, as a scheduler stopping a job would
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 143, output[-3000:]  # cvops's clean exit on SIGTERM, not Ray's
    finally:
        assert_all_gone(ray_tmp)  # nothing of its Ray instance outlives it
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not (tmp_path / "never.parquet").exists()
