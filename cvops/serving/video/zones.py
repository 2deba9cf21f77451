"""Counting zones (`video.zones`): how many tracks crossed a line, or entered and left an area, by class and
direction, as the frames go by. A track counts where its box's centre goes.

A line's `in` is a crossing from its right to its left as you look from its first point to its second
(supervision's `LineZone`; on screen, a line drawn downwards counts left-to-right movement as `in`). An area's
`in` is a track whose centre moves into it (supervision's `PolygonZone` tests the centre), `out` one that
leaves; a track first seen inside has not entered."""

from collections import Counter
from typing import Any

import numpy as np

from cvops.config import ZoneParams
from cvops.serving.video.tracking import Detection


class Zones:
    """Every zone of a video, fed each frame's tracked detections in order."""

    def __init__(self, zones: list[ZoneParams], class_names: list[str], frames: int) -> None:
        """`frames`: how many frames in a row a track must be on the other side before its crossing counts."""
        import supervision as sv

        self.zones, self.class_names, self.frames = zones, class_names, frames
        centre = [sv.Position.CENTER]
        self.lines = {
            z.name: sv.LineZone(
                sv.Point(*z.line[0]), sv.Point(*z.line[1]), triggering_anchors=centre, minimum_crossing_threshold=frames
            )
            for z in zones
            if z.line is not None
        }
        self.areas = {
            z.name: sv.PolygonZone(np.array(z.polygon, dtype=np.int64), triggering_anchors=centre)
            for z in zones
            if z.polygon is not None
        }
        self.inside: dict[str, set[int]] = {name: set() for name in self.areas}  # tracks counted as inside
        self.streak: dict[tuple[str, int], int] = {}  # (area, track): frames in a row on the other side
        self.seen: set[int] = set()
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (zone, label, in|out)

    def update(self, tracked: list[Detection]) -> list[dict[str, Any]]:
        """This frame's crossings: {zone, track, label, direction}, each counted."""
        import supervision as sv

        confirmed = [d for d in tracked if d["track"] is not None]
        if not self.zones or not confirmed:
            return []
        index = {name: i for i, name in enumerate(self.class_names)}
        found = sv.Detections(
            xyxy=np.array([d["box"] for d in confirmed], dtype=np.float32),
            class_id=np.array([index[d["label"]] for d in confirmed], dtype=int),
            tracker_id=np.array([d["track"] for d in confirmed], dtype=int),
        )
        events = []
        for name, line in self.lines.items():
            crossed_in, crossed_out = line.trigger(found)
            events += [self._event(name, d, "in") for d, hit in zip(confirmed, crossed_in, strict=True) if hit]
            events += [self._event(name, d, "out") for d, hit in zip(confirmed, crossed_out, strict=True) if hit]
        for name, area in self.areas.items():
            now = {d["track"] for d, hit in zip(confirmed, area.trigger(found), strict=True) if hit}
            for detection in confirmed:
                track = detection["track"]
                if track not in self.seen:  # first seen: where it is, without having entered or left
                    self.inside[name] |= {track} & now
                    continue
                moved = (track in now) != (track in self.inside[name])
                self.streak[(name, track)] = self.streak.get((name, track), 0) + 1 if moved else 0
                if self.streak[(name, track)] >= self.frames:
                    self.streak[(name, track)] = 0
                    self.inside[name] ^= {track}
                    events.append(self._event(name, detection, "in" if track in now else "out"))
        self.seen |= {d["track"] for d in confirmed}
        return events

    def _event(self, zone: str, detection: Detection, direction: str) -> dict[str, Any]:
        self.counts[(zone, detection["label"], direction)] += 1
        return {"zone": zone, "track": detection["track"], "label": detection["label"], "direction": direction}

    def table(self) -> list[dict[str, Any]]:
        """zones.csv: a row per zone and class (and `all`), its ins and outs; every zone has its `all` row."""
        rows = []
        for zone in self.zones:
            kind = "line" if zone.line is not None else "polygon"
            labels = sorted({label for (name, label, _) in self.counts if name == zone.name})
            for label in [*labels, "all"]:
                count = {
                    direction: sum(
                        n
                        for (name, lab, d), n in self.counts.items()
                        if name == zone.name and d == direction and label in (lab, "all")
                    )
                    for direction in ("in", "out")
                }
                rows.append({"zone": zone.name, "kind": kind, "label": label, **count})
        return rows

    def totals(self) -> dict[str, dict[str, int]]:
        """Each zone's ins and outs over every class: the summary's and MLflow's."""
        return {row["zone"]: {"in": row["in"], "out": row["out"]} for row in self.table() if row["label"] == "all"}
