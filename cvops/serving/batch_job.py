"""A batch-inference job: every file of a folder or an s3:// prefix scored in this process or on Ray, the
predictions written, counts to MLflow, scored images to the inference log. Above both scorers (`batch`,
`on_ray`), so that neither imports the other."""

from dataclasses import dataclass
from pathlib import Path

import mlflow

from cvops.config import DistributedParams, ServeParams
from cvops.evaluation.reports import metric_name
from cvops.registry.artifacts import resolve
from cvops.registry.model_registry import ModelRegistry
from cvops.serving.batch import DETECTIONS, predictions_table, score_inputs, write_predictions
from cvops.serving.inference_log import InferenceLog, LogTarget
from cvops.serving.loading import load_served
from cvops.serving.on_ray import score_on_ray
from cvops.tasks.detection.postprocess import PostProcess


@dataclass(frozen=True)
class BatchJob:
    """What one batch inference scores and where its predictions go."""

    selector: str  # the model: an alias or a version number
    location: str  # the input: a folder or an s3:// prefix
    output: Path  # the predictions file


def score_and_log(
    registry: ModelRegistry,
    cache_dir: Path,
    job: BatchJob,
    serve: ServeParams,
    distributed: DistributedParams,
    log_to: LogTarget,
    post: PostProcess,
) -> dict[str, int]:
    """Score every file under the `job`'s location with its model (a detector's boxes post-processed by `post`,
    detect.served), in this process or on Ray (`distributed`): predictions to its output, counts to the active
    MLflow run, every scored image to the inference log `log_to`. Returns the counts: images, scored,
    unreadable, a detector's boxes, and labels (a classifier's images, a detector's boxes) by class."""
    served = resolve(registry, job.selector, cache_dir)
    if distributed.engine == "ray":
        frame = score_on_ray(served, job.location, serve, distributed, post)
    else:
        predictor = load_served(served, serve.max_batch_images, post)
        frame = score_inputs(predictor, job.location, serve.max_image_pixels)
    table = predictions_table(frame)
    write_predictions(table, job.output)
    scored = frame[frame["error"].isna()]
    labelled = table[table["score"].notna()]  # a classifier's scored images, a detector's boxes
    counts = {
        "images": len(frame),
        "scored": len(scored),
        "unreadable": len(frame) - len(scored),
        **({"boxes": len(labelled)} if DETECTIONS in frame else {}),
        **{f"label_{k}": int(v) for k, v in labelled["label"].value_counts().items()},
    }
    mlflow.log_metrics({metric_name(f"batch_{k}"): v for k, v in counts.items()})
    mlflow.set_tags(
        {
            "model_version": served.version,
            "input": job.location,
            "output": str(job.output),
            "engine": distributed.engine,
        }
    )
    inference_log = InferenceLog(log_to)
    inference_log.append(
        {"endpoint": "batch", **row}
        for row in scored.drop(columns=["path", "error", DETECTIONS], errors="ignore").to_dict("records")
    )
    inference_log.close()
    return counts
