"""What the DVC `import` stage runs: the source params.yaml names, read into data/raw."""

from pathlib import Path

import pandas as pd

from cvops.config import Project
from cvops.data.manifest import import_source
from cvops.data.production import with_production
from cvops.data.sources import SOURCE_READERS
from cvops.tasks.detection.boxes import import_scenes
from cvops.tasks.detection.scenes import detection_source


def import_configured(project: Project) -> pd.DataFrame:
    """What the DVC `import` stage runs: import the source params.yaml names (data.*) into data/raw: for
    classification with the labelled production images of data/production (`cvops labels import`); for
    detection as images/ with the box table. Returns the image manifest."""
    params = project.params()
    data = params.data
    if params.task == "detection":
        return import_scenes(detection_source(data, params.base.seed), project.raw_dir)[0]
    source = SOURCE_READERS[data.source](Path(data.path) if data.path else None, data.limit_per_class)
    return import_source(with_production(source, project.production_dir), project.raw_dir)
