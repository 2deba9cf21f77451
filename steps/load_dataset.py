from typing import Annotated

from zenml import step

from cvops.config import PrepareParams, Project
from cvops.data.prepare import DatasetRef, prepare_dataset


@step
def load_dataset(prepare: PrepareParams, seed: int) -> Annotated[DatasetRef, "dataset"]:
    """Split and resize the imported images; the returned reference names the data version."""
    project = Project.find()
    return prepare_dataset(project.raw_dir, project.prepared_dir, prepare, seed, progress=False)
