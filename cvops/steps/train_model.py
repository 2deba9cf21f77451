from typing import Annotated

import mlflow
from zenml import get_step_context, step

from cvops.config import Params, Project
from cvops.data.prepare import DatasetRef
from cvops.registry.lineage import lineage_tags, log_lineage, training_tags
from cvops.registry.tracking import EpochMetrics, TrainedModel, load_trained_model, log_trained_model
from cvops.training.distillation import distill
from cvops.training.on_ray import fit_on_ray
from cvops.training.trainer import fit


@step(experiment_tracker=True)
def train_model(
    dataset: DatasetRef, params: Params, resume: bool = False, teacher: TrainedModel | None = None
) -> Annotated[TrainedModel, "trained_model"]:
    """Fine-tune the configured timm model, logging curves and the model to MLflow; with a `teacher`, distil
    the student of `params.distill` from it instead (in this process, from its first epoch).

    It takes every parameter, not one section: the run records all of them (with the lineage) so that runs
    compare in the MLflow UI and `cvops models reproduce` can recreate them.
    """
    project = Project.find()
    context = get_step_context()
    tags = lineage_tags(
        project.root,
        params,
        dataset.data_version,
        zenml_run_id=str(context.pipeline_run.id),
        pipeline=context.pipeline.name,
    )
    log_lineage(project.root, params, tags)
    trains = params.student() if teacher is not None else params  # whose checkpoints: the student's are its own
    checkpoint_dir = project.checkpoints_dir / f"{trains.hash()}-{dataset.data_version}"
    if teacher is not None:
        result = distill(
            dataset,
            params,
            load_trained_model(teacher),
            checkpoint_dir=checkpoint_dir,
            on_epoch=EpochMetrics.to_active_run(),
        )
        engine, architecture = "local", params.distill.student
    else:
        train = fit_on_ray if params.distributed.engine == "ray" else fit  # Ray is imported only by the first
        result = train(
            dataset, params, checkpoint_dir=checkpoint_dir, resume=resume, on_epoch=EpochMetrics.to_active_run()
        )
        engine, architecture = params.distributed.engine, params.train.model
    mlflow.set_tags(training_tags(engine, result.world_size, result.backend))
    mlflow.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "train_images_per_second": result.images_per_second,
            "stopped_early": float(result.stopped_early),
        }
    )
    return log_trained_model(
        result.model,
        architecture,
        dataset.class_names,
        dataset.image_size,
        result.best_epoch,
        resize=dataset.resize,
        decoder=dataset.decoder,
    )
