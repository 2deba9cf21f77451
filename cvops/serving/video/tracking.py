"""Multi-object tracking: a detector's boxes of each frame joined into tracks, each object one id.

ByteTrack (the `trackers` package's `ByteTrackTracker`): a Kalman filter predicts where each track's box
goes, boxes are matched to those predictions by overlap, the confident ones first and then the low-scoring
ones (which only extend a track: an object half hidden keeps its id), and a track that nothing extends is
kept for `video.track_lost_seconds` before it ends. Given each frame's own time, so a variable frame rate or
skipped frames move the predictions by the time that passed, not by one step. `video.tracker: sort` is SORT,
the same without the low-score round (bench/video.py compares the two)."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvops.config import VideoParams

Detection = dict[str, Any]  # {"box": [x1, y1, x2, y2], "label": str, "score": float}, + "track" once tracked


class Tracker:
    """Tracks over one video's frames, fed in order."""

    def __init__(self, params: VideoParams, fps: float, class_names: list[str], overlap: float) -> None:
        """`overlap`: boxes of different classes overlapping more are one object (detect.nms_iou)."""
        from trackers import ByteTrackTracker, SORTTracker

        rate = fps or 30.0
        self.class_names, self.overlap = class_names, overlap
        settings: dict[str, Any] = {
            "lost_track_buffer": max(1, round(params.track_lost_seconds * 30)),  # trackers counts it at 30 fps
            "frame_rate": rate,
            "track_activation_threshold": params.track_activation,
            "minimum_consecutive_frames": params.track_min_frames,
            "minimum_iou_threshold": params.track_iou,
        }
        if params.tracker == "bytetrack":  # its second, low-score round extends tracks with the boxes below this
            self.tracker: ByteTrackTracker | SORTTracker = ByteTrackTracker(
                **settings, high_conf_det_threshold=params.track_activation
            )
        else:
            self.tracker = SORTTracker(**settings)

    def update(self, detections: list[Detection], time: float) -> list[Detection]:
        """One frame's detections, each with its track id (None for a box that starts no track yet)."""
        import supervision as sv

        index = {name: i for i, name in enumerate(self.class_names)}
        detections = one_box_per_object(detections, self.overlap)
        found = sv.Detections(
            xyxy=np.array([d["box"] for d in detections], dtype=np.float32).reshape(-1, 4),
            confidence=np.array([d["score"] for d in detections], dtype=np.float32),
            class_id=np.array([index[d["label"]] for d in detections], dtype=int),
        )
        tracked = self.tracker.update(found, timestamp=time)
        assert tracked.class_id is not None and tracked.confidence is not None and tracked.tracker_id is not None
        return [
            {
                "box": [round(float(v), 2) for v in box],
                "label": self.class_names[int(class_id)],
                "score": round(float(score), 6),
                "track": int(track) if track >= 0 else None,
            }
            for box, class_id, score, track in zip(
                tracked.xyxy, tracked.class_id, tracked.confidence, tracked.tracker_id, strict=True
            )
        ]


def one_box_per_object(detections: list[Detection], overlap: float) -> list[Detection]:
    """The best-scored of boxes that overlap more than `overlap`, whatever their classes: the detector's NMS is per
    class, and an object that two classes each claim would start two tracks (the tracker matches by place)."""
    from cvops.tasks.detection.postprocess import nms

    if len(detections) < 2:
        return detections
    boxes = np.array([d["box"] for d in detections], dtype=np.float32)
    kept = nms(boxes, np.array([d["score"] for d in detections], dtype=np.float32), overlap)
    return [detections[int(i)] for i in sorted(kept)]


@dataclass
class TrackRecord:
    """What the tracks table keeps of one track."""

    track: int
    first_frame: int
    first_time: float
    last_frame: int = 0
    last_time: float = 0.0
    frames: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    score_sum: float = 0.0

    def add(self, frame: int, time: float, detection: Detection) -> None:
        self.last_frame, self.last_time, self.frames = frame, time, self.frames + 1
        self.labels[detection["label"]] = self.labels.get(detection["label"], 0) + 1
        self.score_sum += detection["score"]

    def row(self) -> dict[str, Any]:
        """The track's class is the label most of its boxes had (a digit read as another for a frame stays)."""
        label = max(self.labels, key=lambda name: (self.labels[name], name))
        return {
            "track": self.track,
            "label": label,
            "first_time": round(self.first_time, 3),
            "last_time": round(self.last_time, 3),
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames": self.frames,
            "mean_score": round(self.score_sum / self.frames, 4),
        }


class TrackTable:
    """Every track of a video, as its frames go by."""

    COLUMNS = ("track", "label", "first_time", "last_time", "first_frame", "last_frame", "frames", "mean_score")

    def __init__(self) -> None:
        self.tracks: dict[int, TrackRecord] = {}

    def add(self, frame: int, time: float, detections: list[Detection]) -> None:
        for detection in detections:
            if detection["track"] is not None:
                record = self.tracks.setdefault(detection["track"], TrackRecord(detection["track"], frame, time))
                record.add(frame, time, detection)

    def rows(self) -> list[dict[str, Any]]:
        return [self.tracks[track].row() for track in sorted(self.tracks)]
