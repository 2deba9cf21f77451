"""Benchmark: `cvops run video` with the detection demo's int8 detector — frames a second end to end (decode,
detect, track, annotate, encode) at 1280x720 and 1920x1080, against the same detector on the same frames
already decoded and resized in memory; the age of each answer on a stream paced at 30 frames a second; and the
tracking quality (HOTA, IDF1, MOTA, ID switches) of ByteTrack and SORT on digit-tracks videos.

The detector is the detection demo's (overlays/digit-scenes.yaml: FCOS on EfficientNet-Lite0 at 160 px, trained
here on its 600 scenes; or --onnx FILE). The videos are digit-tracks (cvops/tasks/detection/tracks.py): digits
moving across a textured background, H.264 at 30 frames a second, composed for this run. The job is the code
`cvops run video` runs (cvops.serving.video.job.track_video), without the ZenML and MLflow start-up, which costs
the same for a long video as a short one. The end-to-end and detector-alone runs alternate, twice each; the
table has the median.

Usage: python bench/video.py [--onnx FILE] [--seconds 10] [--scenes 600] [--epochs 10]
Writes bench/results/video.json and prints markdown tables.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.detection import prepared  # noqa: E402  (also takes the process offline)

FPS = 30.0


def detector(args: argparse.Namespace, params: Any, scratch: Path) -> Path:
    """The demo's int8 ONNX file (fp32 when int8 did not export): --onnx, or trained here."""
    if args.onnx:
        return Path(args.onnx)
    from cvops.export.quantization import quantize
    from cvops.training.trainer import fit

    ref = prepared(scratch / "data", params)
    result = fit(ref, params)
    report = quantize(result.model.eval(), ref, scratch / "onnx", params)
    return Path((report.int8 or report.fp32).path)


def compose(path: Path, size: tuple[int, int], seconds: float, seed: int) -> Path:
    """A digit-tracks video at `size`: digits scaled to the frame, at 30 frames a second."""
    from cvops.tasks.detection.tracks import digit_tracks, write_tracking_video

    height = size[1]
    video = digit_tracks(
        seed,
        frames=round(seconds * FPS),
        fps=FPS,
        size=size,
        objects=8,
        scale=(height // 8, height // 3),
        speed=(height / 240, height / 80),
    )
    return write_tracking_video(video, path.parent, path.stem)


def end_to_end(predictor: Any, video: Path, folder: Path, params: Any, **video_settings: Any) -> dict[str, Any]:
    """`cvops run video`'s job on one file: its summary (frames a second, seconds by stage, answer ages)."""
    from cvops.serving.video.job import open_source, track_video

    settings = params.video.model_copy(update=video_settings)
    source = open_source(str(video), settings, None)
    summary = track_video(predictor, source, folder, settings, params.detect.served, params.base.seed)
    return summary


def detector_alone(predictor: Any, video: Path, batch: int) -> float:
    """Frames a second of the model and its post-processing alone, the frames decoded and resized beforehand."""
    import numpy as np

    from cvops.data.preprocess import resize_image
    from cvops.serving.video.decode import Frames

    pre = predictor.preprocessing
    frames = Frames(video)
    decoded = [(f.image.size, resize_image(f.image, pre.image_size, pre.resize)) for f in frames]
    frames.close()
    start = time.perf_counter()
    for first in range(0, len(decoded), batch):
        chunk = decoded[first : first + batch]
        outputs = predictor.predict(np.stack([pixels for _, pixels in chunk]))
        for k, (size, _) in enumerate(chunk):
            predictor.detections(tuple(output[k] for output in outputs[:3]), *size)
    return len(decoded) / (time.perf_counter() - start)


def speed(predictor: Any, params: Any, scratch: Path, seconds: float) -> dict[str, Any]:
    """End to end against the detector alone at 720p (twice each, alternating), 1080p, and the paced stream."""
    hd = compose(scratch / "videos" / "hd.mp4", (1280, 720), seconds, params.base.seed)
    full_hd = compose(scratch / "videos" / "full-hd.mp4", (1920, 1080), seconds, params.base.seed + 1)
    runs, alone = [], []
    for attempt in range(2):
        runs.append(end_to_end(predictor, hd, scratch / f"hd-{attempt}", params))
        alone.append(detector_alone(predictor, hd, params.video.batch_frames))
    warm = runs[-1]  # where the time goes: the second run's stages
    no_drawing = end_to_end(predictor, hd, scratch / "hd-tables", params, annotate=False)
    paced = end_to_end(predictor, hd, scratch / "hd-paced", params, fps_budget=FPS)
    big = end_to_end(predictor, full_hd, scratch / "full-hd", params)
    stages = warm["seconds_by_stage"]
    return {
        "end_to_end_fps_720p": statistics.median(run["processing_fps"] for run in runs),
        "detector_alone_fps_720p": statistics.median(alone),
        "stage_share_720p": {name: value / sum(stages.values()) for name, value in stages.items()},
        "tables_only_fps_720p": no_drawing["processing_fps"],
        "paced_30fps": {key: paced[key] for key in paced if key.startswith(("frames", "answer_age", "frame_period"))},
        "end_to_end_fps_1080p": big["processing_fps"],
        "real_time_factor_1080p": big["processing_fps"] / FPS,
        "frames_per_video": warm["frames"],
    }


def tracking_quality(predictor: Any, params: Any, scratch: Path, count: int = 6) -> dict[str, dict[str, float]]:
    """Each tracker's scores on digit-tracks videos as a detector's evaluation scores them (`evaluate.tracking`:
    cvops.tasks.detection.tracking), the detector's boxes computed once and given to both."""
    from cvops.tasks.detection.tracking import score_tracking, sequences

    videos = sequences("digit-tracks", count, params.base.seed, scratch / "tracking" / "truth")
    found = [answer for video in videos for answer in detections(predictor, list(video.frames()))]
    results = {}
    for kind in ("bytetrack", "sort"):
        replay = iter(found)
        settings = params.video.model_copy(update={"tracker": kind})
        scores, _ = score_tracking(
            lambda frames, answers=replay: [next(answers) for _ in frames],
            videos,
            predictor.preprocessing.class_names,
            settings,
            params.detect.nms_iou,
            scratch / "tracking" / kind,
        )
        results[kind] = scores
    return results


def detections(predictor: Any, frames: list[Any]) -> list[list[dict[str, Any]]]:
    """The served detector's boxes on each frame, in the frame's pixels."""
    from cvops.data.preprocess import resize_image

    pre, answers = predictor.preprocessing, []
    for frame in frames:
        outputs = predictor.predict(resize_image(frame, pre.image_size, pre.resize)[None])
        answers.append(predictor.detections(tuple(output[0] for output in outputs[:3]), *frame.size))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", help="a detector's ONNX file (default: train the detection demo's here)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each speed video")
    parser.add_argument("--scenes", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    from cvops.config import load_params
    from cvops.tasks.detection.predictor import DetectionPredictor

    overrides = [f"data.scenes={args.scenes}", f"train.epochs={args.epochs}"]
    params = load_params(REPO / "params.yaml", overrides, overlay=REPO / "overlays" / "digit-scenes.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-video-"))
    onnx = detector(args, params, scratch)
    predictor = DetectionPredictor(
        onnx, "cvops-detector", "bench", "", params.video.batch_frames, post=params.detect.served
    )
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "detector": onnx.name,
        "input_size": predictor.preprocessing.image_size,
        "speed": speed(predictor, params, scratch, args.seconds),
        "tracking": tracking_quality(predictor, params, scratch),
    }
    path = REPO / "bench" / "results" / "video.json"
    path.write_text(json.dumps(out, indent=2))
    report(out)
    print(f"\nJSON: {path.relative_to(REPO)}")


def report(out: dict[str, Any]) -> None:
    s = out["speed"]
    print(f"{out['machine']}; {out['detector']} at {out['input_size']} px; {s['frames_per_video']} frames a video\n")
    print("| run | frames/s |\n|---|---:|")
    print(f"| 1280x720 end to end (decode, detect, track, annotate, encode) | {s['end_to_end_fps_720p']:.1f} |")
    print(f"| 1280x720 without annotated.mp4 (tables only) | {s['tables_only_fps_720p']:.1f} |")
    print(f"| 1280x720 detector alone (frames decoded and resized in memory) | {s['detector_alone_fps_720p']:.1f} |")
    print(
        f"| 1920x1080 end to end (real-time factor at 30 fps: {s['real_time_factor_1080p']:.2f}) | "
        f"{s['end_to_end_fps_1080p']:.1f} |"
    )
    print("\n| stage (1280x720) | share of the time |\n|---|---:|")
    for name, share in sorted(s["stage_share_720p"].items(), key=lambda item: -item[1]):
        print(f"| {name} | {share:.0%} |")
    p = s["paced_30fps"]
    print(
        f"\nPaced at 30 frames a second (a 1280x720 stream): {p['frames_dropped']} of {p['frames_received']} frames "
        f"dropped; answer age p50 {p['answer_age_ms_p50']} ms, p99 {p['answer_age_ms_p99']} ms "
        f"(two frame periods: {2 * p['frame_period_ms']:.0f} ms)"
    )
    print("\n| tracker | HOTA | IDF1 | MOTA | ID switches | a true track |\n|---|---:|---:|---:|---:|---:|")
    for kind, m in out["tracking"].items():
        print(
            f"| {kind} | {m['tracking_hota']:.3f} | {m['tracking_idf1']:.3f} | {m['tracking_mota']:.3f} "
            f"| {m['tracking_id_switches']:.0f} | {m['tracking_id_switches_per_track']:.2f} |"
        )


if __name__ == "__main__":
    main()
