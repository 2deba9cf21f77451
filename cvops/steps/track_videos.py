from typing import Annotated, Any

from zenml import step

from cvops.config import DetectParams, DistributedParams, Project, RegistryParams, ServeParams, VideoParams
from cvops.registry.model_registry import ModelRegistry
from cvops.serving.video.job import VideoJob
from cvops.serving.video.videos import run_videos


@step(experiment_tracker=True)
def track_videos(
    job: VideoJob,
    registry: RegistryParams,
    serve: ServeParams,
    detect: DetectParams,
    video: VideoParams,
    distributed: DistributedParams,
    seed: int,
) -> Annotated[dict[str, Any], "counts"]:
    """Every video of the `job` (or the live source it names) through its model, frame by frame (params: video),
    here or on Ray (distributed): outputs under the job's folder, counts to MLflow, sampled frames to the
    inference log."""
    project = Project.find()
    return run_videos(
        ModelRegistry.of(project, registry.model_name),
        project.onnx_cache,
        job,
        video,
        detect.served,
        project.inference_log(serve),
        seed,
        distributed,
    )
