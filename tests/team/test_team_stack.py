"""A team on real servers: training lands on the MLflow server (artifacts in S3) and the ZenML server, the
three users' rights and four eyes hold on the CLI and on the server, promotions from two hosts serialise,
data round-trips through S3, and no secret leaks into anything a run wrote."""

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import psycopg2
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from cvops.cli.shapes import schema
from cvops.env import REPLICA_ENV
from cvops.registry.model_registry import (
    CHALLENGER,
    CHAMPION,
    CVOPS_CHAMPION_TAG,
    MODEL_INFO_TAG,
    PREVIOUS,
    TRAINED_BY_TAG,
)
from cvops.serving.inference_log import TABLE
from cvops.serving.video.output import VideoWriter
from cvops.stack.checkout import TEAM_TRACKER
from cvops.stack.state import held
from cvops.stack.team import BUCKET
from cvops.stack.web import http_json
from tests.cli import assert_one_line_error, clean_env, cvops
from tests.conftest import SMALL_RUN
from tests.images import write_mode_folder
from tests.predictions import same_predictions
from tests.ray_cluster import assert_all_gone
from tests.server import Server, stopped_on_exit
from tests.team.conftest import MODEL, PROMOTION, TEAM_GUIDE, TRAINING, Team, mlflow_client, new_checkout

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def zenml(team: Team, code: str, config: Path) -> str:
    """Run `code` with a ZenML client of the team's server (the API key of `.team/env`); its stdout."""
    env = clean_env() | team.env | {"ZENML_CONFIG_PATH": str(config)}
    done = subprocess.run(
        [sys.executable, "-c", f"from zenml.client import Client\n{code}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_training_keeps_runs_artifacts_and_pipeline_runs_on_the_servers(team, trained_on_team, monkeypatch, tmp_path):
    root, output = trained_on_team
    assert "then `cvops models promote 1` (or reject)" in output  # the server knows who is signed in
    client = mlflow_client(team, monkeypatch, "viewer")  # a reader sees everything
    version = client.get_model_version(MODEL, "1")
    assert version.tags[TRAINED_BY_TAG] == "trainer" and version.tags["gate"] == "passed"
    assert client.get_run(version.run_id).info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied by the server
    keys = team.s3_keys()
    assert any(key.startswith("mlflow/") and version.run_id in key for key in keys), keys[:20]
    assert any(key.startswith("zenml/") for key in keys), "ZenML's artifact store is the bucket"
    assert not (root / "mlflow" / "mlflow.db").exists() and not list((root / ".zen").rglob("*.db"))  # no local store
    runs = zenml(team, "print([str(r.id) for r in Client().list_pipeline_runs(size=100).items])", tmp_path / "z")
    assert version.tags["zenml_run_id"] in runs
    ui = cvops(root, "ui", env=team.env)  # opens nothing locally: the team's servers are the UIs
    assert (
        ui.returncode == 0 and team.env["MLFLOW_TRACKING_URI"] in ui.stdout and team.env["ZENML_STORE_URL"] in ui.stdout
    )


def test_team_status_json_lists_every_server_running(team) -> None:
    result = cvops(team.root, "team", "status", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    status = json.loads(result.stdout)
    jsonschema.validate(status, schema("team-status"))
    assert {s["name"] for s in status["services"] if s["running"]} == set(team.stack.services())
    assert team.env["MLFLOW_TRACKING_URI"] in {s["url"] for s in status["services"]}


def set_trainer_permission(team: Team, permission: str) -> None:
    """What an MLflow admin does in the UI: replace the trainer's grant on the registered model."""
    api, admin = f"{team.env['MLFLOW_TRACKING_URI']}/api/3.0/mlflow/users/permissions", team.as_admin()
    auth = (admin["MLFLOW_TRACKING_USERNAME"], admin["MLFLOW_TRACKING_PASSWORD"])
    grant = {"username": "trainer", "resource_type": "registered_model", "resource_id": MODEL}
    assert http_json("POST", f"{api}/revoke", grant, auth=auth)[0] == 200
    assert http_json("POST", f"{api}/grant", grant | {"permission": permission}, auth=auth)[0] == 200


def test_users_rights_and_four_eyes_hold(team, trained_on_team, monkeypatch) -> None:
    root, _ = trained_on_team
    viewer, trainer, reviewer = (team.as_user(role) for role in ("viewer", "trainer", "reviewer"))
    assert_one_line_error(cvops(root, "models", "promote", "1", env=viewer), 9, "'viewer' may not promote", "READ")
    assert_one_line_error(cvops(root, "models", "promote", "1", env=trainer), 9, "'trainer' may not promote", "EDIT")
    assert_one_line_error(cvops(root, "models", "rollback", "--reason", "x", env=viewer), 9, "may not roll back")
    assert_one_line_error(
        cvops(root, "models", "promote", "1", "--reviewer", "alice", env=reviewer), 9, "--reviewer 'alice' is refused"
    )
    with pytest.raises(MlflowException, match=r"403|Permission"):  # the server itself refuses a reader
        mlflow_client(team, monkeypatch, "viewer").set_registered_model_alias(MODEL, CHAMPION, "1")

    set_trainer_permission(team, "MANAGE")
    try:  # even with the right to manage the model, the trainer cannot approve what they trained
        assert_one_line_error(cvops(root, "models", "promote", "1", env=trainer), 9, "four eyes", "'trainer' trained")
    finally:
        set_trainer_permission(team, "EDIT")
    assert CHAMPION not in mlflow_client(team, monkeypatch, "viewer").get_model_version(MODEL, "1").aliases

    (promoted,) = team.guide.run_page(TEAM_GUIDE, after=TRAINING, until=PROMOTION)  # as the team guide does it
    assert "approved by reviewer" in promoted[1]
    version = mlflow_client(team, monkeypatch, "viewer").get_model_version(MODEL, "1")
    assert CHAMPION in version.aliases and version.tags["approved_by"] == "reviewer"


PROMOTE = """
import sys
from pathlib import Path
from cvops.config import Project
from cvops.env import REPLICA_ENV
from cvops.serving.inference_log import TABLE
from cvops.registry.model_registry import ModelRegistry
ModelRegistry.of(Project(Path(sys.argv[1])), sys.argv[2]).promote(sys.argv[3], note="from " + sys.argv[1])
"""


def lock_sessions(url: str) -> int:
    with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cvops-lock'")
        return int(cursor.fetchone()[0])


def test_promotions_from_two_hosts_serialise_on_the_state_database(team, trained_on_team, monkeypatch, tmp_path):
    """Two checkouts share no file: only the team's state database can order their promotions."""
    trainer = mlflow_client(team, monkeypatch, "trainer")
    first = trainer.get_model_version(MODEL, "1")
    record = ("approval", "approved_by", "approved_at", "approval_note")  # copies of version 1 awaiting review
    tags = {key: value for key, value in first.tags.items() if key not in record} | {"approval": "pending"}
    model_id = first.source.removeprefix("models:/")
    new = [
        trainer.create_model_version(MODEL, first.source, first.run_id, tags, model_id=model_id).version
        for _ in range(2)
    ]
    state = team.env["CVOPS_STATE_URL"]
    hosts = [new_checkout(tmp_path / f"host-{i}") for i in range(2)]
    env = clean_env() | team.as_user("reviewer")
    with held(f"registry-{MODEL}", state, tmp_path, wait=0):  # a third host is promoting right now
        started = [
            subprocess.Popen(
                [sys.executable, "-c", PROMOTE, str(host), MODEL, str(version)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for host, version in zip(hosts, new, strict=True)
        ]
        deadline = time.monotonic() + 120
        while lock_sessions(state) < 3:  # both promoters reached the lock and wait for it
            assert time.monotonic() < deadline and all(p.poll() is None for p in started), started[0].stderr
            time.sleep(0.2)
        viewer = mlflow_client(team, monkeypatch, "viewer")
        assert viewer.get_registered_model(MODEL).aliases[CHAMPION] == "1"  # nothing moved while the lock was held
    for process in started:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors[-2000:]
    model = viewer.get_registered_model(MODEL)
    champion, previous = model.aliases[CHAMPION], model.aliases[PREVIOUS]
    assert {champion, previous} == {str(v) for v in new}  # the second saw the first as the champion it replaced
    assert model.tags[CVOPS_CHAMPION_TAG] == champion
    assert viewer.get_model_version(MODEL, champion).tags["approved_by"] == "reviewer"


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_data_push_and_pull_round_trip_through_s3(team, trained_on_team) -> None:
    root, _ = trained_on_team
    prepared = digests(root / "data" / "prepared")
    pushed = cvops(root, "data", "push", env=team.env)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert any(key.startswith("dvc/") for key in team.s3_keys())
    for gone in (root / ".dvc" / "cache", root / "data"):
        subprocess.run(["rm", "-rf", str(gone)], check=True)
    pulled = cvops(root, "data", "pull", env=team.env)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert digests(root / "data" / "prepared") == prepared


def test_batch_inference_reads_an_s3_prefix_as_a_folder_in_process_and_on_ray(team, trained_on_team, tmp_path):
    """The same files in a folder and under an S3 prefix give the same rows, on either engine; the Ray actors
    read S3 with the keys of the environment their node has (here the command's, on a local instance)."""
    root, _ = trained_on_team
    folder = write_mode_folder(tmp_path / "incoming", {"dark": 60, "light": 190})
    (folder / "notes.txt").write_text("not an image")  # keeps its row, with an error
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden: no row
    prefix = f"incoming/{tmp_path.name}"
    for path in folder.rglob("*"):
        if path.is_file():
            team.s3().put_object(Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(folder)}", Body=path.read_bytes())
    on_ray = tmp_path / "ray.yaml"
    on_ray.write_text("distributed: {engine: ray, address: null, batch_workers: 1, cpus_per_worker: 1.0}\n")
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths are under it

    def scored(where: str, name: str, *more: str) -> pd.DataFrame:
        output = tmp_path / f"{name}.parquet"
        args = ["run", "batch-inference", "--input", where, "--output", str(output), "--version", "1", *more]
        result = cvops(root, *args, env=team.env | {"RAY_TMPDIR": str(ray_tmp)})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return pd.read_parquet(output)

    try:
        expected = scored(str(folder), "folder")
        files = [path for path in folder.rglob("*") if path.is_file()]
        assert len(expected) == len(files) - 1 and expected["error"].notna().sum() == 1
        same_predictions(scored(f"s3://{BUCKET}/{prefix}/", "s3"), expected)
        same_predictions(scored(f"s3://{BUCKET}/{prefix}", "s3-ray", "--overlay", str(on_ray)), expected)
    finally:
        assert_all_gone(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    missing = cvops(root, "run", "batch-inference", "--input", f"s3://{BUCKET}/nothing-here", env=team.env)
    assert_one_line_error(missing, 3, f"s3://{BUCKET}/nothing-here")
    keyless = {key: value for key, value in team.env.items() if not key.startswith("AWS_ACCESS")}
    unsigned = cvops(root, "run", "batch-inference", "--input", f"s3://{BUCKET}/{prefix}", env=keyless)
    assert_one_line_error(unsigned, 2, "AWS_ACCESS_KEY_ID")


def test_videos_under_an_s3_prefix_run_as_a_folders_do(team, trained_on_team, tmp_path) -> None:
    """A digits video and a text file named .mp4 under a prefix of the team's bucket: the video's segments come
    out as from a folder (named by its key under the prefix), the text file is named, and a prefix without
    videos is one line."""
    root, _ = trained_on_team
    images = {label: min((root / "data" / "raw" / label).iterdir()) for label in ("3", "7")}
    clip = tmp_path / "digits.mp4"
    writer = VideoWriter(clip, 64, 64, 10)
    for index, label in enumerate(["3"] * 20 + ["7"] * 20):
        writer.write(Image.open(images[label]).convert("RGB").resize((64, 64), Image.Resampling.NEAREST), index / 10)
    writer.close()
    prefix = f"videos/{tmp_path.name}"
    team.s3().put_object(Bucket=BUCKET, Key=f"{prefix}/line/digits.mp4", Body=clip.read_bytes())
    team.s3().put_object(Bucket=BUCKET, Key=f"{prefix}/notes.mp4", Body=b"not a video")
    out = tmp_path / "out"
    ran = cvops(root, "run", "video", f"s3://{BUCKET}/{prefix}/", "--version", "1", "--output", str(out), env=team.env)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "1 of 2 videos, 40 frames" in ran.stdout and f"s3://{BUCKET}/{prefix}/notes.mp4: not a video" in ran.stdout
    segments = pd.read_csv(out / "line" / "digits" / "segments.csv", dtype={"label": str})
    assert list(segments["label"]) == ["3", "7"], segments
    summary = json.loads((out / "line" / "digits" / "summary.json").read_text())
    assert summary["video"] == f"s3://{BUCKET}/{prefix}/line/digits.mp4" and summary["complete"]
    empty = cvops(root, "run", "video", f"s3://{BUCKET}/nothing-here/", "--version", "1", env=team.env)
    assert_one_line_error(empty, 3, f"s3://{BUCKET}/nothing-here")


def test_no_secret_appears_in_anything_a_run_wrote(team, trained_on_team, monkeypatch, tmp_path) -> None:
    root, output = trained_on_team
    client = mlflow_client(team, monkeypatch, "viewer")
    version = client.get_model_version(MODEL, "1")
    run = client.get_run(version.run_id)
    card = Path(client.download_artifacts(version.run_id, "model_card", str(tmp_path)))
    component = f"Client().get_stack_component(T.EXPERIMENT_TRACKER, '{TEAM_TRACKER}')"
    code = f"import json\nfrom zenml.enums import StackComponentType as T\nprint(json.dumps({component}.configuration))"
    tracker = zenml(team, code, tmp_path / "z")
    assert "{{cvops-mlflow.password}}" in tracker  # the component refers to a ZenML secret
    written = [
        output.encode(),
        tracker.encode(),
        json.dumps(run.data.params).encode(),
        json.dumps(run.data.tags).encode(),
        json.dumps(version.tags).encode(),
    ]
    # what the run wrote: not the stack's own state in .team/ (its secrets, by design; `.gitignore`d)
    files = [
        p
        for folder in (root, card)
        for p in folder.rglob("*")
        if p.is_file() and p.name != "credentials.yaml" and ".team" not in p.relative_to(folder).parts
    ]
    written += [p.read_bytes() for p in files]
    # ZenML's own credential store keeps its session and API key, in a folder only its owner can open
    assert (root / ".zen" / "global" / "credentials.yaml").is_file()
    assert (root / ".zen" / "global").stat().st_mode & 0o077 == 0
    for secret in team.config.secrets():
        leaks = sum(secret.encode() in blob for blob in written)
        assert leaks == 0, f"a secret of the team stack appears in {leaks} of the things the run wrote"


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def logged_by_replica(url: str, replicas: Iterable[str]) -> dict[str, int]:
    """How many rows each of `replicas` has in the shared inference log (other tests' batch runs log there too)."""
    with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(
            f"SELECT replica, count(*) FROM {TABLE} WHERE replica = ANY(%s) GROUP BY replica", (list(replicas),)
        )
        return dict(cursor.fetchall())


@pytest.fixture
def champion(team, trained_on_team, monkeypatch) -> Path:
    """The trained checkout with a champion: version 1, promoted by the reviewer, unless one already is."""
    root, _ = trained_on_team
    if CHAMPION not in mlflow_client(team, monkeypatch, "viewer").get_registered_model(MODEL).aliases:
        promoted = cvops(root, "models", "promote", "1", "--note", "to serve", env=team.as_user("reviewer"))
        assert promoted.returncode == 0, promoted.stderr[-2000:]
    return root


def test_two_serving_replicas_log_to_the_shared_store_and_one_monitoring_run_sees_both(team, champion):
    """Both capture every image, into the team's bucket without being told where; the true label of one
    replica's answer, sent to the other, is found in the shared log; one monitoring run reads the traffic and
    the labels of both."""
    root = champion
    requests = {"replica-a": 12, "replica-b": 9}
    since = datetime.now(UTC).isoformat()  # the window: this test's traffic, whatever else the store holds
    capture = ("-S", "serve.capture.fraction=1.0")
    replicas = [Server(root, *capture, env=team.env | {REPLICA_ENV: name}) for name in requests]
    answers: dict[str, list[str]] = {}
    with stopped_on_exit(replicas[0].process), stopped_on_exit(replicas[1].process):
        for server, (name, count) in zip(replicas, requests.items(), strict=True):
            for i in range(count):
                status, body = server.post_files("/classify", "image", [(f"{name}-{i}.png", png(i))])
                assert status == 200, body
                answers.setdefault(name, []).append(body["request_id"])
        for request_id in answers["replica-a"]:  # to the replica that did not answer it
            status, body = replicas[1].post_json("/feedback", {"request_id": request_id, "label": "3"})
            assert status == 200, body
        deadline = time.monotonic() + 60
        while logged_by_replica(team.env["CVOPS_STATE_URL"], requests) != requests:  # written in the background
            assert time.monotonic() < deadline, logged_by_replica(team.env["CVOPS_STATE_URL"], requests)
            time.sleep(0.2)
    checked = cvops(root, "run", "monitoring", "--since", since, env=team.env)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert f"window: {sum(requests.values())} predictions" in checked.stdout
    assert "live accuracy: not enough feedback (12 labelled requests)" in checked.stdout
    listed = team.s3().list_objects_v2(Bucket=BUCKET, Prefix="monitoring/captures/")["Contents"]
    captured = {item["Key"].rpartition("/")[2] for item in listed}
    assert {f"{request_id}.png" for ids in answers.values() for request_id in ids} <= captured


def test_the_scheduler_keeps_its_jobs_in_the_state_database(team, champion) -> None:
    """Another host's scheduler would find the same jobs and next run times there."""
    root = champion
    ran = cvops(root, "schedule", "--once", env=team.env)
    assert ran.returncode == 0 and "monitoring: succeeded" in ran.stdout, ran.stderr[-3000:]
    with closing(psycopg2.connect(team.env["CVOPS_STATE_URL"])) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id FROM apscheduler_jobs")
        assert {row[0] for row in cursor.fetchall()} >= {"monitoring"}
    assert not (root / "monitoring" / "scheduler.sqlite").exists()
    idle = cvops(root, "schedule", "--once", env=team.env)
    assert "monitoring: not due (next " in idle.stdout, idle.stderr[-2000:]


def test_a_stopped_mlflow_server_is_one_line_then_up_again_on_the_same_address(team, trained_on_team) -> None:
    root, _ = trained_on_team
    before = cvops(root, "models", "list", env=team.env)
    assert before.returncode == 0, before.stderr[-2000:]
    mlflow_server = team.stack.services()["mlflow"]
    os.killpg(mlflow_server.pid, signal.SIGTERM)
    while team.stack.running().get("mlflow"):
        time.sleep(0.1)
    quick = team.env | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}  # the default retries for about a minute
    assert_one_line_error(cvops(root, "models", "list", env=quick), 10, f":{mlflow_server.port} does not answer")
    assert team.stack.up(MODEL, say=print) == team.env  # restarted on its old port: clients' env stays right
    after = cvops(root, "models", "list", env=team.env)
    assert after.returncode == 0, after.stderr[-2000:]
    assert after.stdout == before.stdout  # every version, alias and approval is still there


def test_the_mlflow_server_restarting_while_a_version_registers_never_leaves_half_a_version(
    team, trained_on_team, monkeypatch
) -> None:
    root, _ = trained_on_team
    client = mlflow_client(team, monkeypatch, "viewer")
    before = {v.version for v in client.search_model_versions(f"name = '{MODEL}'")}
    training = subprocess.Popen(
        [sys.executable, "-m", "cvops.cli", "run", "training", "--overlay", str(SMALL_RUN)],
        cwd=root,
        env=clean_env() | team.env | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    with stopped_on_exit(training):
        output = []
        for line in training.stdout:  # the server goes down as the registration starts
            output.append(ANSI.sub("", line))
            if "Step register_model has started" in output[-1]:
                break
        else:
            pytest.fail(f"the pipeline ended before register_model started:\n{''.join(output)[-3000:]}")
        mlflow_server = team.stack.services()["mlflow"]
        os.killpg(mlflow_server.pid, signal.SIGTERM)
        while team.stack.running().get("mlflow"):
            time.sleep(0.1)
        assert team.stack.up(MODEL, say=print) == team.env  # back on its old port
        output += [ANSI.sub("", line) for line in training.stdout]
        code = training.wait(timeout=600)
    said = "".join(output)
    assert "Retrying" in said, said[-3000:]  # the client noticed the outage
    new = [v for v in client.search_model_versions(f"name = '{MODEL}'") if v.version not in before]
    if code == 0:  # retried across the restart: one version, registered once, whole
        assert len(new) == 1, [v.version for v in new]
        assert client.get_model_version_by_alias(MODEL, CHALLENGER).version == new[0].version
    else:  # the restart outlasted the client's retries: one line that says so
        assert code == 10 and len([line for line in output if line.startswith("error:")]) == 1, said[-3000:]
        assert len(new) <= 1, [v.version for v in new]
    for version in new:
        assert {"gate", "approval", MODEL_INFO_TAG, TRAINED_BY_TAG, "zenml_run_id"} <= set(version.tags), version.tags
