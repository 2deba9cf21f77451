from datetime import datetime

from zenml import pipeline

from cvops.config import Params
from cvops.steps.detect_drift import detect_drift
from cvops.steps.load_inference_window import load_inference_window


@pipeline(name="monitoring", enable_cache=False)
def monitoring(params: Params, window: int | None = None, since: datetime | None = None) -> None:
    """Inference-log window -> Evidently drift tests against the champion's reference -> verdict + reports.

    The verdict is the pipeline's output; what to do about it (alert, retrain) is decided by the caller
    (`cvops run monitoring`, `cvops schedule`), never by a step.
    """
    rows = load_inference_window(params.serve, params.monitor, window, since)
    detect_drift(rows, params.registry, params.monitor, params.base.seed)
