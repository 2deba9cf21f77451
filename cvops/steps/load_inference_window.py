from datetime import datetime
from typing import Annotated

import pandas as pd
from zenml import step

from cvops.config import MonitorParams, Project, ServeParams
from cvops.serving.feedback import labelled_window


@step
def load_inference_window(
    serve: ServeParams, monitor: MonitorParams, window: int | None = None, since: datetime | None = None
) -> Annotated[pd.DataFrame, "inference_window"]:
    """The answers to check, with the true labels that came back: those since `since`, else the newest `window`
    (monitor.window)."""
    source = Project.find().inference_log(serve)
    return labelled_window(source, since=since, last=None if since else window or monitor.window)
