"""`cvops run video` as a user runs it, with the session's trained detector and classifier: digits moving across
a video each keep one track id from start to end and are counted across zones as they truly cross (the docs'
video page, run as written); a stop mid-video leaves outputs that are valid and say they are not all; a folder
with a file that is not a video scores the others; a live MJPEG stream that drops is recovered; a classifier's
one-frame misreading does not split its segments."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import matplotlib.path as mpath
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from cvops.config import Project
from cvops.serving.inference_log import read_inference_log
from cvops.serving.video.output import VideoWriter
from cvops.tasks.detection.tracks import digit_tracks, write_tracking_video
from tests.cli import assert_one_line_error, clean_env, cvops
from tests.docs import DOCS, Shell, docs_env
from tests.mjpeg import mjpeg_stream
from tests.server import stopped_on_exit

pytestmark = pytest.mark.slow
# Two digits of 56-72 pixels drifting slowly on a textured background, both in view for all 45 frames: what the
# tests' small detector (six epochs on 160 scenes) finds in nearly every frame
TWO_DIGITS = {"seed": 3, "frames": 45, "fps": 15, "objects": 2, "scale": (56, 72), "speed": (0.5, 1.0)}


@pytest.fixture(scope="module")
def scenes(trained_scenes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_scenes.copy(tmp_path_factory.mktemp("video") / "checkout")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - w * h
    return w * h / union


def inside_polygon(polygon: list[list[float]], point: np.ndarray) -> bool:
    return bool(mpath.Path(polygon).contains_point(point))


def test_each_digit_keeps_one_track_id_from_start_to_end(scenes, tmp_path) -> None:
    """docs/how-to/video.md run as written (tests/docs.py) in the trained detector's project, its video a
    digit-tracks video with its true tracks."""
    home = tmp_path / "home"
    write_tracking_video(digit_tracks(**TWO_DIGITS), home / "videos", "line-3")  # type: ignore[arg-type]
    write_tracking_video(digit_tracks(**{**TWO_DIGITS, "seed": 4}), home / "videos", "line-4")  # type: ignore[arg-type]
    with Shell(scenes, docs_env(home), tmp_path / "shell") as shell:
        said = "".join(printed for _, printed in shell.run_page(DOCS / "how-to" / "video.md"))
    folder = scenes / "reports" / "line-3" / "line-3"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and summary["frames"] == 45 and summary["tracks"] == 2, summary
    assert f"1 of 1 videos, 45 frames, 2 tracks -> {scenes / 'reports' / 'line-3'}" in said

    # each track follows one digit of the ground truth (MOTChallenge gt.txt), and each digit has one track
    truth = pd.read_csv(home / "videos" / "line-3" / "gt" / "gt.txt", header=None).to_numpy()
    lines = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(45))
    followed: dict[int, list[int]] = {}
    for line in lines:
        here = truth[truth[:, 0] == line["frame"] + 1]
        boxes = np.column_stack([here[:, 2], here[:, 3], here[:, 2] + here[:, 4], here[:, 3] + here[:, 5]])
        for detection in line["detections"]:
            overlaps = iou(np.array(detection["box"]), boxes)
            if detection["track"] is not None and overlaps.max() > 0.5:
                followed.setdefault(detection["track"], []).append(int(here[overlaps.argmax(), 1]))
    digit_of = {track: max(set(ids), key=ids.count) for track, ids in followed.items()}
    assert sorted(digit_of.values()) == [1, 2], followed  # two tracks, one per digit
    for track, ids in followed.items():
        assert ids.count(digit_of[track]) == len(ids) >= 40, (track, ids)  # never another digit's; 40+ frames

    tracks = pd.read_csv(folder / "tracks.csv")
    assert sorted(tracks["track"]) == sorted(followed) and (tracks["frames"] >= 40).all()
    assert tracks["last_time"].max() == pytest.approx(44 / 15, abs=1e-3)
    frames = decoded_frames(folder / "annotated.mp4")
    assert len(frames) == 45 and frames[20].shape == (192, 256, 3)

    client = MlflowClient(f"sqlite:///{scenes / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cvops")
    runs = client.search_runs([experiment.experiment_id], "metrics.video_frames = 45", order_by=["start_time"])
    assert [run.data.metrics["video_tracks"] for run in runs] == [2, 2] and runs[0].data.tags["model_version"] == "1"

    # both videos on Ray Data: line-3's outputs are this process's, line for line
    on_ray = scenes / "reports" / "lines"
    assert (on_ray / "line-3" / "frames.jsonl").read_text() == (folder / "frames.jsonl").read_text()
    assert (on_ray / "line-3" / "tracks.csv").read_text() == (folder / "tracks.csv").read_text()
    assert json.loads((on_ray / "line-4" / "summary.json").read_text())["complete"]
    (ray_run,) = client.search_runs([experiment.experiment_id], "tags.engine = 'ray'")
    assert ray_run.data.metrics["video_videos"] == 2 and ray_run.data.metrics["video_frames"] == 90

    # the page's zones, counted as the true centres cross them (each digit crosses one, once)
    zones = {z["name"]: z for z in yaml.safe_load((scenes / "overlays" / "line-3.yaml").read_text())["video"]["zones"]}
    expected = {("gate", "in"): 0, ("gate", "out"): 0, ("bay", "in"): 0, ("bay", "out"): 0}
    for digit in (1, 2):
        mine = truth[truth[:, 1] == digit]
        centres = np.column_stack([mine[:, 2] + mine[:, 4] / 2, mine[:, 3] + mine[:, 5] / 2])[[0, -1]]
        (x, top), (_, bottom) = zones["gate"]["line"]
        sides = [cx > x for cx, cy in centres if top <= cy <= bottom]
        if len(sides) == 2 and sides[0] != sides[1]:
            expected[("gate", "in" if sides[1] else "out")] += 1  # a line drawn downwards: left to right is in
        inside = [inside_polygon(zones["bay"]["polygon"], point) for point in centres]
        if inside[0] != inside[1]:
            expected[("bay", "in" if inside[1] else "out")] += 1
    assert sum(expected.values()) == 2  # the video crosses each zone once: a test of the counting, not of luck
    counted = pd.read_csv(scenes / "reports" / "line-3-zones" / "line-3" / "zones.csv")
    totals = counted[counted["label"] == "all"].set_index("zone")
    assert {(zone, d): int(totals.loc[zone, d]) for zone, d in expected} == expected, counted
    assert runs[1].data.metrics["video_zone_gate_out"] == expected[("gate", "out")]


def test_a_stopped_job_leaves_valid_outputs_that_say_they_are_not_all(scenes, tmp_path) -> None:
    clip = write_tracking_video(digit_tracks(5, frames=1500, fps=15, objects=3), tmp_path, "long")
    folder = scenes / "stopped" / "long"
    command = [sys.executable, "-m", "cvops.cli", "run", "video", str(clip), "--version", "1", "--output", "stopped"]
    process = subprocess.Popen(
        command,
        cwd=scenes,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    with stopped_on_exit(process):
        lines = folder / "frames.jsonl"
        while process.poll() is None and not (lines.exists() and len(lines.read_text().splitlines()) >= 30):
            time.sleep(0.05)  # until the job has written 30 frames
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] is False and summary["stopped"] == "stopped (SIGTERM)"
    written = lines.read_text().splitlines()
    assert 30 <= summary["frames"] == len(written) < 1500 and json.loads(written[-1])["frame"] == len(written) - 1
    assert len(decoded_frames(folder / "annotated.mp4")) == len(written)  # it plays, to the last frame written
    assert list(pd.read_csv(folder / "tracks.csv").columns)[:2] == ["track", "label"]


def test_a_folder_with_one_file_that_is_not_a_video_runs_the_others(scenes, tmp_path) -> None:
    folder = tmp_path / "recordings"
    write_tracking_video(digit_tracks(**{**TWO_DIGITS, "frames": 10}), folder, "good")  # type: ignore[arg-type]
    (folder / "notes.mp4").write_text("not a video\n")
    log = Project(scenes).inference_log(Project(scenes).params().serve)
    before = len(read_inference_log(log))
    every_frame = ("-S", "video.log_fraction=1.0")
    printed = ok(cvops(scenes, "run", "video", str(folder), "--version", "1", "--output", "folder", *every_frame))
    assert "1 of 2 videos, 10 frames" in printed and "notes.mp4: not a video FFmpeg can read" in printed
    logged = read_inference_log(log).iloc[before:]
    assert list(logged["endpoint"]) == ["video"] * 10 and set(logged["model_version"].astype(str)) == {"1"}
    assert (scenes / "folder" / "good" / "summary.json").exists() and not (scenes / "folder" / "notes").exists()
    alone = cvops(scenes, "run", "video", str(folder / "notes.mp4"), "--version", "1")
    assert_one_line_error(alone, 3, "notes.mp4: not a video FFmpeg can read")
    far = tmp_path / "far.yaml"  # drawn for a 1920x1080 camera; this video is 256x192
    far.write_text("video: {zones: [{name: gate, line: [[960, 0], [960, 1080]]}]}\n")
    outside = cvops(scenes, "run", "video", str(folder / "good.mp4"), "--version", "1", "--overlay", str(far))
    assert_one_line_error(outside, 3, "zone gate reaches outside the 256x192 frames", "good.mp4")
    (folder / "good.mov").write_bytes((folder / "good.mp4").read_bytes())  # good.mp4 and good.mov: one folder
    twice = cvops(scenes, "run", "video", str(folder), "--version", "1", "--output", "twice")
    assert_one_line_error(twice, 3, "would both write to", "rename one of them")
    assert not (scenes / "twice").exists()


def test_a_classifiers_one_frame_misreading_does_not_split_its_segments(trained_digits, tmp_path) -> None:
    """10 frames a second: a 3 for 1.5 s, one frame of a 7, a 3 again, then a 7 for 2 s."""
    project = trained_digits.copy(tmp_path / "digits")
    images = {label: min((project / "data" / "raw" / label).iterdir()) for label in ("3", "7")}
    clip = tmp_path / "digits.mp4"
    writer = VideoWriter(clip, 64, 64, 10)
    for index, label in enumerate(["3"] * 15 + ["7"] + ["3"] * 4 + ["7"] * 20):
        writer.write(Image.open(images[label]).convert("RGB").resize((64, 64), Image.Resampling.NEAREST), index / 10)
    writer.close()
    printed = ok(cvops(project, "run", "video", str(clip), "--version", "1", "--output", "out"))
    assert "1 of 1 videos, 40 frames ->" in printed and "tracks" not in printed
    segments = pd.read_csv(project / "out" / "digits" / "segments.csv", dtype={"label": str})
    assert list(segments["label"]) == ["3", "7"], segments
    assert segments["frames"].sum() == 40 and 2.0 <= segments["start"].iloc[1] <= 2.5  # the 7 from 2.0 s, smoothed
    raw = [json.loads(line)["raw"] for line in (project / "out" / "digits" / "frames.jsonl").read_text().splitlines()]
    assert raw[15] == "7"  # the frame itself was read as a 7


def test_a_live_stream_is_answered_as_it_comes_and_a_failure_is_recovered(scenes) -> None:
    """An MJPEG camera on 127.0.0.1 at 15 frames a second that drops its client after 30 frames and refuses the
    first reconnection (503), watched for 7 seconds: the job opens it again on its second try, 1 + 2 s later,
    and its frames keep their times, the gap a gap. The camera's password, given in the address, reaches the
    camera and is written nowhere: not in the outputs, the MLflow store or ZenML's."""
    video = digit_tracks(**TWO_DIGITS)  # type: ignore[arg-type]
    camera = ("camera", "hunter2")
    with mjpeg_stream(list(video.images()), fps=15, drop_after=30, refuse=1, credentials=camera) as (url, connections):
        secret = url.replace("http://", "http://camera:hunter2@")
        printed = ok(cvops(scenes, "run", "video", secret, "--version", "1", "--duration", "7", "--output", "live"))
    assert len(connections) == 3  # the first, the refused reconnection, the one that worked
    (folder,) = (scenes / "live").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and summary["reconnects"] == 1, summary
    assert 30 <= summary["frames"] <= summary["frames_received"] <= 15 * 7  # 15 a second, less the gap
    assert summary["frames"] + summary["frames_dropped"] == summary["frames_received"]
    times = [json.loads(line)["time"] for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert times == sorted(times) and max(np.diff(times)) >= 2.9  # waited 1 s, was refused, waited 2 s
    assert times[-1] <= 7.0 and len(decoded_frames(folder / "annotated.mp4")) == summary["frames"]
    assert f"1 of 1 videos, {summary['frames']} frames" in printed
    written = [p.read_text() for p in folder.iterdir() if p.suffix in (".json", ".jsonl", ".csv")]
    assert "hunter2" not in "".join(written) + printed + folder.name
    stores = [scenes / "mlflow" / "mlflow.db", *(scenes / ".zen").rglob("*.db")]  # ZenML keeps the job's inputs
    assert len(stores) >= 2 and not any(b"hunter2" in store.read_bytes() for store in stores)
