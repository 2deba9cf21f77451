"""A video job over every video of its location: the outputs' folders checked, each video tracked in this process
(`job.track_one`) or on Ray Data (`on_ray`), the counts to MLflow. Above both engines, so that neither imports
the other (as `cvops.serving.batch_job` is for images)."""

import logging
import re
from pathlib import Path
from typing import Any

import mlflow

from cvops.config import DistributedParams, VideoParams
from cvops.errors import DataError
from cvops.evaluation.reports import metric_name
from cvops.registry.artifacts import resolve
from cvops.registry.model_registry import ModelRegistry
from cvops.serving.inference_log import InferenceLog, LogTarget
from cvops.serving.loading import load_served
from cvops.serving.video.decode import list_videos
from cvops.serving.video.job import VideoJob, track_one
from cvops.serving.video.live import is_live, shown
from cvops.serving.video.on_ray import track_on_ray
from cvops.tasks.detection.postprocess import PostProcess

log = logging.getLogger("cvops")


def output_folder(job: VideoJob, name: str) -> Path:
    """A video's own folder under the job's output: its path under the input folder or prefix without the
    suffix; a live source's, its address made a name (`rtsp://cam-3:8554/line` -> `cam-3_8554_line`)."""
    if is_live(name):
        return job.output / (re.sub(r"[^A-Za-z0-9._-]+", "_", shown(name).split("://", 1)[-1]).strip("_") or "stream")
    return job.output / Path(name).with_suffix("")


def run_videos(
    registry: ModelRegistry,
    cache_dir: Path,
    job: VideoJob,
    params: VideoParams,
    post: PostProcess,
    log_to: LogTarget,
    seed: int,
    distributed: DistributedParams,
) -> dict[str, Any]:
    """Every video of the job, in this process or on Ray Data (`distributed.engine: ray`; a live source is
    watched here whatever the engine): the counts (videos, unreadable, frames, a detector's tracks), with each
    video's summary or why it could not be read; counts to the active MLflow run, sampled frames to the
    inference log."""
    videos = [(job.location, job.location)] if is_live(job.location) else list_videos(job.location)
    folders: dict[str, Path] = {}
    for name, video in videos:  # clip.mp4 and clip.mov would overwrite each other's outputs
        folder = output_folder(job, name)
        if same := next((v for v, f in folders.items() if f == folder), None):
            raise DataError(f"{same} and {video} would both write to {folder}: rename one of them")
        folders[video] = folder
    served = resolve(registry, job.selector, cache_dir)
    engine = "local" if is_live(job.location) else distributed.engine
    inference_log = InferenceLog(log_to)
    try:
        if engine == "ray":
            results = track_on_ray(served, folders, params, post, seed, distributed, inference_log.append)
        else:
            predictor = load_served(served, params.batch_frames, post)
            results = [
                track_one(predictor, video, folder, params, post, seed, job.duration, inference_log.append)
                for video, folder in folders.items()
            ]
    finally:
        inference_log.close()
    for failed in (r["error"] for r in results if "error" in r):
        if len(results) == 1:
            raise DataError(failed)
        log.warning("%s", failed)
    counts = _counts(results, params)
    mlflow.log_metrics({metric_name(f"video_{k}"): v for k, v in counts.items()})
    mlflow.set_tags(
        {"model_version": served.version, "input": shown(job.location), "output": str(job.output), "engine": engine}
    )
    return {**counts, "results": results}


def _counts(results: list[dict[str, Any]], params: VideoParams) -> dict[str, int]:
    """The job's counts over its videos' summaries (or errors): videos, unreadable, frames, a detector's tracks
    and zone crossings, a live source's frames received and dropped and its reconnections."""
    read = [r for r in results if "error" not in r]
    detector = any("tracks" in r for r in read)
    return {
        "videos": len(results),
        "unreadable": len(results) - len(read),
        "frames": sum(r["frames"] for r in read),
        **({"tracks": sum(r["tracks"] for r in read)} if detector else {}),
        **{
            f"zone_{zone.name}_{direction}": sum(r["zones"][zone.name][direction] for r in read if "zones" in r)
            for zone in (params.zones if detector else [])
            for direction in ("in", "out")
        },
        **(
            {key: sum(r[f"frames_{key}"] for r in read) for key in ("received", "dropped")}
            | {"reconnects": sum(r["reconnects"] for r in read)}
            if any("frames_received" in r for r in read)
            else {}
        ),
    }
