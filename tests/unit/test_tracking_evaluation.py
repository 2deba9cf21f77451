"""A detector's tracking, scored: the truth of videos read (digit-tracks, or the user's MOTChallenge folders,
every bad row one line), a perfect detector scoring perfect tracks, and the gate's tracking checks."""

import numpy as np
import pytest
from PIL import Image

from cvops.config import GateParams, VideoParams
from cvops.errors import DataError
from cvops.evaluation.reports import Evaluation
from cvops.tasks.detection.report import floors
from cvops.tasks.detection.tracking import data_version, read_truth, score_tracking, sequences


def truth_detector(truth: np.ndarray, label: str = "1"):  # type: ignore[no-untyped-def]
    """A detector that answers each frame with its true boxes, but those marked 0 (ignored), frames counted as
    they are asked for."""
    seen = [0]

    def detect(frames: list[Image.Image]) -> list[list[dict]]:
        answers = []
        for _ in frames:
            seen[0] += 1
            rows = truth[(truth[:, 0] == seen[0]) & ((truth[:, 6] != 0) if truth.shape[1] > 6 else True)]
            answers.append(
                [{"box": [x, y, x + w, y + h], "label": label, "score": 0.9} for _, _, x, y, w, h, *_ in rows]
            )
        return answers

    return detect


def test_a_perfect_detector_tracks_the_digit_tracks_videos_perfectly(tmp_path) -> None:
    (video,) = sequences("digit-tracks", 1, seed=42, scratch=tmp_path / "truth")
    truth = read_truth(video.truth)
    assert len(set(truth[:, 1])) >= 3 and truth[:, 0].max() == 90
    scores, strip = score_tracking(truth_detector(truth), [video], ["1"], VideoParams(), 0.6, tmp_path / "out")
    assert scores["tracking_idf1"] > 0.97 and scores["tracking_mota"] > 0.97, scores  # a new track's first frame
    assert scores["tracking_id_switches"] == 0 and scores["tracking_frames"] == 90
    with Image.open(strip) as picture:
        assert picture.width > 4 * 256  # four frames side by side


def test_a_users_mot_folder_is_read_and_every_bad_row_named(tmp_path) -> None:
    sequence = tmp_path / "mine" / "walk-1"
    (sequence / "img1").mkdir(parents=True)
    (sequence / "gt").mkdir()
    for k in range(1, 6):
        Image.new("RGB", (64, 48), (k * 40, 0, 0)).save(sequence / "img1" / f"{k:06d}.jpg")
    truth = "".join(f"{k},1,{10 + k},10,12,12,1,3,1\n{k},2,40,20,10,10,0,3,1\n" for k in range(1, 6))
    (sequence / "gt" / "gt.txt").write_text(truth)
    (sequence / "seqinfo.ini").write_text("[Sequence]\nname=walk-1\nframeRate=25\n")
    (found,) = sequences(str(tmp_path / "mine"), 3, seed=0, scratch=tmp_path / "unused")
    assert found.name == "walk-1" and found.fps == 25 and len(list(found.frames())) == 5
    rows = read_truth(found.truth)
    scores, _ = score_tracking(truth_detector(rows, "3"), [found], ["3"], VideoParams(), 0.6, tmp_path / "out")
    assert scores["tracking_idf1"] > 0.85  # 4 frames of 5 (a track starts on its second); class 3 is scored too
    version = data_version(str(tmp_path / "mine"), [found], seed=0)  # the run's tracking_data tag
    assert version.startswith("sha256:") and data_version(str(tmp_path / "mine"), [found], seed=1) == version
    Image.new("RGB", (64, 48), (0, 0, 255)).save(sequence / "img1" / "000003.jpg")  # one frame changed
    assert data_version(str(tmp_path / "mine"), sequences(str(tmp_path / "mine"), 3, 0, tmp_path), 0) != version
    (sequence / "gt" / "gt.txt").write_text(truth + "6,1,10,10,12,12,1,3,1\n")
    with pytest.raises(DataError, match=r"frame 6 is past the 5 frames"):
        sequences(str(tmp_path / "mine"), 3, seed=0, scratch=tmp_path)
    (sequence / "gt" / "gt.txt").write_text(truth + "3,1,ten,10,12,12\n")
    with pytest.raises(DataError, match=r"gt\.txt:11: not numbers"):
        sequences(str(tmp_path / "mine"), 3, seed=0, scratch=tmp_path)
    (sequence / "gt" / "gt.txt").write_text("3,1,10,10,0,12\n")
    with pytest.raises(DataError, match=r"gt\.txt:1: want frame .* width > 0"):
        sequences(str(tmp_path / "mine"), 3, seed=0, scratch=tmp_path)
    with pytest.raises(DataError, match="no sequence in"):
        sequences(str(tmp_path / "mine" / "walk-1" / "img1"), 3, seed=0, scratch=tmp_path)


def test_the_gates_tracking_checks_judge_the_scores_and_fail_without_them() -> None:
    scored = Evaluation(
        metrics={"map": 0.5, "tracking_idf1": 0.6, "tracking_id_switches_per_track": 0.5},
        class_names=[],
        confusion_matrix_png="",
        num_images=1,
        task="detection",
    )
    gate = GateParams(min_map=0.1, min_idf1=0.7, max_id_switches_per_track=1.0)
    verdicts = {c.name: c.verdict for c in floors(scored, gate)}
    assert verdicts == {"mAP": "pass", "tracking IDF1": "fail", "ID switches a true track": "pass"}
    unscored = scored.model_copy(update={"metrics": {"map": 0.5}})
    missing = [c for c in floors(unscored, gate) if c.name.startswith(("tracking", "ID"))]
    assert [c.verdict for c in missing] == ["fail", "fail"] and "evaluate.tracking" in missing[0].note
    assert [c.name for c in floors(unscored, GateParams(min_map=0.1))] == ["mAP"]  # not asked for: no check
