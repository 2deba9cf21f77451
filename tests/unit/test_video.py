"""The video parts that need no model: reading every kind of file (and every way one is not a video), the
outputs' writer, the digit-tracks ground truth, tracking by ByteTrack, and a classifier's smoothing."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cvops.config import VideoParams, ZoneParams
from cvops.env import STREAM_PASSWORD_ENV
from cvops.errors import DataError
from cvops.serving.video.decode import Frames, list_videos, open_video
from cvops.serving.video.live import LiveFrames, shown, with_password, without_password
from cvops.serving.video.output import VideoWriter
from cvops.serving.video.segments import Segments, Smoother
from cvops.serving.video.tracking import Tracker, TrackTable, one_box_per_object
from cvops.serving.video.zones import Zones
from cvops.tasks.detection.tracks import digit_tracks, write_tracking_video
from tests.mjpeg import mjpeg_stream


def write_frames(path: Path, count: int, fps: float = 15, size: tuple[int, int] = (64, 48)) -> Path:
    writer = VideoWriter(path, *size, fps)
    for i in range(count):
        writer.write(Image.new("RGB", size, (i * 8 % 256, 40, 90)), i / fps)
    writer.close()
    return path


def frames_in(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_video_reads_frame_by_frame_with_times_from_its_start(tmp_path) -> None:
    frames = Frames(write_frames(tmp_path / "clip.mp4", 30, fps=15))
    read = list(frames)
    frames.close()
    assert frames.info.fps == pytest.approx(15, abs=0.01) and (frames.info.width, frames.info.height) == (64, 48)
    assert [f.index for f in read] == list(range(30)) and frames.stopped is None
    assert read[0].time == 0.0 and read[-1].time == pytest.approx(29 / 15, abs=1e-3)
    assert read[10].image.getpixel((5, 5))[0] == pytest.approx(80, abs=6)  # the frame's own colour, in order


def test_what_is_not_a_video_is_one_line_naming_the_file(tmp_path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    audio = tmp_path / "talk.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    empty = tmp_path / "empty.mkv"
    with av.open(str(empty), "w") as container:  # a video stream's header, and no frame
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    for path, says in [
        (text, "not a video FFmpeg can read"),
        (audio, "no video stream (it holds audio)"),
        (tmp_path / "gone.mp4", "no such file"),
        (empty, "no frame in the file"),
    ]:
        with pytest.raises(DataError, match=f"{path.name}: .*") as raised:
            open_video(path)
        assert says in str(raised.value)


def test_a_file_cut_short_yields_the_frames_before_the_cut_and_says_so(tmp_path) -> None:
    """An MP4 with its index first (a camera's or phone's, "faststart"), cut at two thirds."""
    whole = tmp_path / "whole.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for _ in range(60):
            pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    frames = Frames(cut)
    count = sum(1 for _ in frames)
    assert 0 < count < 60 and frames.stopped == f"the file ends after frame {count} of the 60 it declares"


def test_a_killed_writer_leaves_a_video_that_plays_up_to_its_last_whole_second(tmp_path) -> None:
    path = tmp_path / "killed.mp4"
    writing = textwrap.dedent(f"""
        from pathlib import Path
        from PIL import Image
        from cvops.serving.video.output import VideoWriter
        writer = VideoWriter(Path({str(path)!r}), 128, 96, 15)
        for i in range(60):
            writer.write(Image.new("RGB", (128, 96), (i * 4, 0, 0)), i / 15)
        print("written", flush=True)
        input()
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", writing], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "written"
    process.kill()  # no close: the encoder's last frames and the file's end are never written
    process.wait()
    assert 30 <= frames_in(path) < 60


def test_list_videos_takes_a_file_or_the_videos_of_a_folder(tmp_path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "c").mkdir()
    for name in ("a/one.mp4", "a/b/two.MOV", "a/readme.txt"):
        (tmp_path / name).write_bytes(b"")
    a = tmp_path / "a"
    assert list_videos(str(a)) == [("b/two.MOV", str(a / "b" / "two.MOV")), ("one.mp4", str(a / "one.mp4"))]
    assert list_videos(str(a / "one.mp4")) == [("one.mp4", str(a / "one.mp4"))]
    with pytest.raises(DataError, match="no video files in"):
        list_videos(str(a / "c"))


def test_digit_tracks_ground_truth_follows_each_digit_and_is_reproducible(tmp_path) -> None:
    video = digit_tracks(3, frames=45, fps=15, objects=2, scale=(56, 72), speed=(0.5, 1.0))
    truth = np.array(video.ground_truth())
    assert set(truth[:, 1]) == {1, 2} and len(truth) == 90  # both digits inside the frame throughout
    first = truth[(truth[:, 1] == 1) & (truth[:, 0] == 1)][0]
    later = truth[(truth[:, 1] == 1) & (truth[:, 0] == 11)][0]
    mover = video.movers[0]
    assert later[2] - first[2] == pytest.approx(mover.velocity[0] * 10, abs=1.01)  # it moves at its speed
    assert (
        digit_tracks(3, frames=45, fps=15, objects=2).ground_truth()
        == digit_tracks(3, frames=45, fps=15, objects=2).ground_truth()
    )
    path = write_tracking_video(video, tmp_path)
    assert frames_in(path) == 45
    rows = (tmp_path / "video" / "gt" / "gt.txt").read_text().splitlines()
    assert len(rows) == 90 and rows[0].split(",")[0] == "1"  # MOTChallenge: frames from 1


def test_bytetrack_keeps_each_objects_id_through_a_short_gap() -> None:
    """Two objects moving apart; the second is not detected for 6 frames (0.2 s of 1 s allowed): two ids."""
    tracker = Tracker(VideoParams(), 30, ["a", "b"], overlap=0.6)
    table = TrackTable()
    for frame in range(40):
        found = [{"box": [10 + 2 * frame, 10, 40 + 2 * frame, 40], "label": "a", "score": 0.9}]
        if not 15 <= frame < 21:
            found.append({"box": [200 - 2 * frame, 100, 230 - 2 * frame, 130], "label": "b", "score": 0.8})
        table.add(frame, frame / 30, tracker.update(found, frame / 30))
    rows = table.rows()
    assert len(rows) == 2 and {r["label"] for r in rows} == {"a", "b"}, rows
    assert all(r["frames"] >= 33 for r in rows)


def test_one_box_per_object_whatever_the_classes() -> None:
    same = [
        {"box": [10, 10, 50, 50], "label": "3", "score": 0.5},
        {"box": [11, 10, 50, 51], "label": "8", "score": 0.6},
        {"box": [100, 10, 140, 50], "label": "3", "score": 0.4},
    ]
    assert [d["label"] for d in one_box_per_object(same, 0.6)] == ["8", "3"]


def test_a_one_frame_misreading_does_not_break_a_segment() -> None:
    smoother, segments = Smoother(0.5), Segments()
    labels = ["cat"] * 15 + ["dog"] + ["cat"] * 4 + ["dog"] * 20  # 10 fps: one frame of dog, then dog for 2 s
    for frame, label in enumerate(labels):
        probabilities = np.array([0.9, 0.1]) if label == "cat" else np.array([0.1, 0.9])
        smooth = smoother.update(frame / 10, probabilities)
        best = int(smooth.argmax())
        segments.add(frame, frame / 10, ["cat", "dog"][best], float(smooth[best]))
    table = segments.table()
    assert [row["label"] for row in table] == ["cat", "dog"], table
    assert table[0]["start"] == 0.0 and 2.0 <= table[1]["start"] <= 2.3 and table[1]["end"] == 3.9


def test_zones_count_each_crossing_once_by_direction_however_the_box_jitters() -> None:
    """A track moving right across a downward line (in) and into an area whose edge its centre jitters on for a
    while before it goes in for good; a second track already inside when first seen (not an entry)."""
    zones = Zones(
        [
            ZoneParams(name="gate", line=((100, 0), (100, 200))),
            ZoneParams(name="bay", polygon=[(0, 0), (300, 0), (300, 50), (0, 50)]),
        ],
        ["a", "b"],
        frames=3,
    )
    jitter = [52, 52, 49, 49, 51, 51, 48, 48, 47, 46, 45, 44, 43, 42]  # the centre's y: in, out, in for good
    events = []
    for frame, y in enumerate(jitter):
        x = 80 + 3 * frame  # crosses x = 100 at frame 7
        moving = {"box": [x - 5, y - 5, x + 5, y + 5], "label": "a", "score": 0.9, "track": 1}
        parked = {"box": [200, 10, 210, 20], "label": "b", "score": 0.9, "track": 2}
        events += [(frame, e["zone"], e["direction"]) for e in zones.update([moving, parked])]
    assert events == [(8, "bay", "in"), (9, "gate", "in")], events
    assert zones.totals() == {"gate": {"in": 1, "out": 0}, "bay": {"in": 1, "out": 0}}
    assert {(r["zone"], r["label"], r["in"]) for r in zones.table()} >= {("gate", "a", 1), ("bay", "all", 1)}


def test_a_video_stored_sideways_is_read_upright_as_players_show_it(tmp_path) -> None:
    """A phone's video: frames stored 64 x 48 with a 90-degree display rotation (counter-clockwise)."""
    path = tmp_path / "phone.mp4"
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:12, :16] = 255  # a white corner, top-left as stored
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode())
    frames = Frames(path)
    first = next(iter(frames)).image
    frames.close()
    assert (frames.info.width, frames.info.height) == first.size == (48, 64)
    pixels = np.asarray(first.convert("L"))
    assert pixels[-6:, :6].mean() > 200 and pixels[:6, :6].mean() < 50  # turned counter-clockwise: bottom-left


def test_a_track_is_kept_through_a_gap_as_long_as_track_lost_seconds_at_any_frame_rate() -> None:
    """At 15 frames a second, an object unseen for 0.6 s keeps its id (1 s allowed); unseen for 1.6 s it does not."""
    for gap, tracks in ((9, 1), (24, 2)):
        tracker, table = Tracker(VideoParams(), 15, ["a"], overlap=0.6), TrackTable()
        for frame in range(60):
            if not 20 <= frame < 20 + gap:
                box = [10 + 2 * frame, 10, 40 + 2 * frame, 40]
                table.add(frame, frame / 15, tracker.update([{"box": box, "label": "a", "score": 0.9}], frame / 15))
        assert len(table.rows()) == tracks, (gap, table.rows())


def test_a_file_played_as_a_camera_keeps_its_times_and_drops_what_a_slow_job_cannot_answer(tmp_path) -> None:
    """30 frames at 30 a second played in real time to a job that needs 0.1 s a frame (three periods): it is
    given the newest frame each time, the rest are dropped and counted, and every frame keeps the file's time."""
    path = write_frames(tmp_path / "clip.mp4", 30, fps=30)
    source = LiveFrames(str(path), budget=None, reconnect=0)
    answered = []
    for batch in source.batches(8, lambda: 0.1):
        assert len(batch) == 1  # a third of a frame fits a period: one frame a time
        answered += [arrival.frame for arrival in batch]
        time.sleep(0.1)  # the job's own work, as slow as the test says
    source.close()
    assert source.received == 30 and len(answered) + source.dropped == 30 and source.dropped >= 15
    assert all(f.time == pytest.approx(f.index / 30, abs=1e-3) for f in answered)
    assert [f.index for f in answered] == sorted(f.index for f in answered) and source.stopped is None


def test_a_live_source_runs_for_its_duration_only(tmp_path) -> None:
    path = write_frames(tmp_path / "long.mp4", 150, fps=30)  # 5 s
    source = LiveFrames(str(path), budget=None, reconnect=0, limit=1.0)
    started = time.monotonic()
    frames = [arrival.frame for batch in source.batches(8, lambda: 0.001) for arrival in batch]
    source.close()
    assert time.monotonic() - started < 2.5 and 20 <= len(frames) <= 31 and frames[-1].time <= 1.0
    assert source.received == len(frames) + source.dropped


def test_a_zone_that_cannot_count_is_refused_with_what_to_fix() -> None:
    for zones, says in [
        ([{"name": "gate", "line": [[10, 10], [10, 10]]}], "the line's two points are the same point"),
        ([{"name": "bay", "polygon": [[0, 0], [5, 5], [0, 0]]}], "a polygon needs three different points"),
        ([{"name": "gate", "line": [[0, 0], [1, 1]], "polygon": [[0, 0], [5, 0], [0, 5]]}], "give one of line"),
        ([{"name": "a", "line": [[0, 0], [1, 1]]}, {"name": "a", "line": [[2, 2], [3, 3]]}], "two zones named a"),
        ([{"name": "far", "line": [[0, 0], [100000, 1]]}], "less than or equal to 16384"),
    ]:
        with pytest.raises(ValueError, match=says):
            VideoParams(zones=zones)


def test_a_streams_password_is_kept_out_of_what_is_stored_and_put_back_for_ffmpeg(monkeypatch) -> None:
    given = "rtsp://line%20op:p%40ss@10.0.0.3:8554/line-3?profile=1"
    assert shown(given) == "rtsp://10.0.0.3:8554/line-3?profile=1"  # printed and logged: no user, no password
    stored, password = without_password(given)  # what a job keeps (ZenML stores it): the user, no password
    assert (stored, password) == ("rtsp://line%20op@10.0.0.3:8554/line-3?profile=1", "p@ss")
    assert with_password(stored) == stored  # no CVOPS_STREAM_PASSWORD: nothing to put back
    monkeypatch.setenv(STREAM_PASSWORD_ENV, password)
    assert with_password(stored) == given  # what FFmpeg opens, encoded as given
    assert with_password(given) == given and with_password("rtsp://10.0.0.3/line") == "rtsp://10.0.0.3/line"
    assert without_password("/dev/video0") == ("/dev/video0", None)


def test_a_stream_that_sends_nothing_is_one_line_naming_it_without_its_password() -> None:
    refused = pytest.raises(DataError, match=r"127\.0\.0\.1:\d+/stream\.mjpg: cannot open the stream")
    with mjpeg_stream([Image.new("RGB", (64, 48))], fps=15, drop_after=0) as (url, connections), refused as raised:
        LiveFrames(url.replace("http://", "http://camera:hunter2@"), None, 0, 1.0)
    assert connections and "hunter2" not in str(raised.value) and "\n" not in str(raised.value)
