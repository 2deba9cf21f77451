from pathlib import Path
from typing import Annotated

import mlflow
from zenml import step

from cvops.config import Params, Project
from cvops.monitoring.inference_log import InferenceLog
from cvops.registry import ModelRegistry
from cvops.serving.batch import score_folder, write_predictions
from cvops.serving.predictor import Predictor
from cvops.serving.source import resolve


@step(experiment_tracker=True)
def batch_predict(input_dir: str, output: str, selector: str, params: Params) -> Annotated[dict[str, int], "counts"]:
    """Score every file of `input_dir` with the `selector` model; predictions to `output`, counts to MLflow,
    every scored image to the inference log."""
    project = Project.find()
    served = resolve(ModelRegistry(params.registry.model_name, project.registry_lock), selector,
                     project.bentoml_home / "onnx")  # fmt: skip
    predictor = Predictor.of(served)
    frame = score_folder(predictor, Path(input_dir), params.serve.max_image_pixels)
    write_predictions(frame, Path(output))
    scored = frame[frame["error"].isna()]
    counts = {"images": len(frame), "scored": len(scored), "unreadable": len(frame) - len(scored),
              **{f"label_{k}": int(v) for k, v in scored["label"].value_counts().items()}}  # fmt: skip
    mlflow.log_metrics({f"batch_{k}": v for k, v in counts.items()})
    mlflow.set_tags({"model_version": served.version, "input_dir": input_dir, "output": output})
    inference_log = InferenceLog(project.root / params.serve.inference_log)
    inference_log.append(
        {"endpoint": "batch", **row} for row in scored.drop(columns=["path", "error"]).to_dict("records")
    )
    inference_log.close()
    return counts
