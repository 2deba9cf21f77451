from typing import Annotated

import pandas as pd
from zenml import step

from cvops.config import MonitorParams, Project, RegistryParams
from cvops.monitoring.drift import DriftVerdict, check_champion
from cvops.registry.model_registry import ModelRegistry


@step(experiment_tracker=True)
def detect_drift(
    window: pd.DataFrame, registry: RegistryParams, monitor: MonitorParams, seed: int
) -> Annotated[DriftVerdict, "drift_verdict"]:
    """Evidently drift tests of the window against the champion's reference, and its live quality (`seed`: a
    detector's bootstrap interval); the verdict, the HTML and JSON reports under reports/ and in MLflow."""
    project = Project.find()
    return check_champion(
        ModelRegistry.of(project, registry.model_name),
        project.onnx_cache,
        window,
        monitor,
        project.root / monitor.reports,
        seed,
    )
