"""Classification's data part: the configured image source (with the labelled production images) imported into
data/raw, and each prepared image's class index."""

from pathlib import Path

import pandas as pd

from cvops.config import Params, Project
from cvops.data.manifest import import_source
from cvops.data.prepare import load_split as load_split  # images, class indices and manifest rows of one split
from cvops.data.production import reviewed_labels, with_production
from cvops.data.sources import read_source


def import_raw(project: Project, params: Params) -> pd.DataFrame:
    """The source params.yaml names into data/raw/<class>/, with the labelled production images of
    data/production (`cvops labels import`) and the labels people corrected there; the image manifest."""
    data = params.data
    source = read_source(data.source, Path(data.path) if data.path else None, data.limit_per_class)
    inbox = project.production_dir
    return import_source(with_production(source, inbox), project.raw_dir, reviewed_labels(inbox))
