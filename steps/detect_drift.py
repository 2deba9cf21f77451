from datetime import UTC, datetime
from typing import Annotated

import mlflow
import pandas as pd
from zenml import step

from cvops.config import Params, Project
from cvops.monitoring import drift
from cvops.monitoring.drift import DriftVerdict
from cvops.monitoring.reference import load_reference
from cvops.registry import ModelRegistry
from cvops.serving.source import reference_dir, resolve


@step(experiment_tracker=True)
def detect_drift(window: pd.DataFrame, params: Params) -> Annotated[DriftVerdict, "drift_verdict"]:
    """Evidently drift tests of the window against the champion's reference; the verdict, the HTML and JSON
    reports under reports/ and in MLflow."""
    project = Project.find()
    cache = project.bentoml_home / "onnx"
    served = resolve(ModelRegistry(params.registry.model_name, project.registry_lock), "champion", cache)
    reference, projection = load_reference(reference_dir(served, cache))
    out_dir = project.root / params.monitor.reports / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    verdict = drift.detect_drift(reference, projection.fingerprint, window, served.version, params.monitor, out_dir)
    mlflow.set_tags({"pipeline": "monitoring", "drift": verdict.status, "model_version": served.version})
    mlflow.log_metrics({"window_rows": verdict.rows, "drifted_columns": len(verdict.drifted)})
    mlflow.log_metrics({f"p_{c.column}": c.p_value for c in verdict.columns})
    mlflow.log_artifacts(str(out_dir), artifact_path="drift")
    return verdict
