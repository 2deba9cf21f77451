from zenml import pipeline

from cvops.config import Params
from cvops.serving.video.job import VideoJob
from cvops.steps.track_videos import track_videos


@pipeline(name="video", enable_cache=False)
def video(job: VideoJob, params: Params) -> None:
    """A video file, a folder of videos, or a live source -> per video: the annotated video, a line per frame,
    the tracks (a detector) or segments (a classifier), a summary; counts to MLflow, sampled frames to the
    inference log."""
    track_videos(job, params.registry, params.serve, params.detect, params.video, params.distributed, params.base.seed)
