from pathlib import Path
from typing import Annotated

from zenml import step

from cvops.config import DetectParams, DistributedParams, Project, RegistryParams, ServeParams
from cvops.registry.model_registry import ModelRegistry
from cvops.serving.batch_job import BatchJob, score_and_log


@step(experiment_tracker=True)
def batch_predict(
    location: str,
    output: str,
    selector: str,
    registry: RegistryParams,
    serve: ServeParams,
    distributed: DistributedParams,
    detect: DetectParams,
) -> Annotated[dict[str, int], "counts"]:
    """Score every file under `location` (a folder or an s3:// prefix) with the `selector` model, in process or
    on Ray (params: distributed); predictions to `output` (a detector's: a row per box), counts to MLflow, every
    scored image to the inference log."""
    project = Project.find()
    return score_and_log(
        ModelRegistry.of(project, registry.model_name),
        project.onnx_cache,
        BatchJob(selector, location, Path(output)),
        serve,
        distributed,
        project.inference_log(serve),
        detect.served,
    )
