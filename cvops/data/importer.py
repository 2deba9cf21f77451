"""What the DVC `import` stage runs: the source params.yaml names, read into data/raw."""

import pandas as pd

from cvops.config import Project
from cvops.tasks import task


def import_configured(project: Project) -> pd.DataFrame:
    """What the DVC `import` stage runs: import the source params.yaml names (data.*) into data/raw as its task
    does (classification: with the labelled production images of data/production; detection: images/ with the
    box table). Returns the image manifest."""
    params = project.params()
    return task(params.task).data.import_raw(project, params)
