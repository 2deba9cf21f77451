from typing import Annotated

from zenml import step

from cvops.config import Project
from cvops.data.prepare import DatasetRef, load_dataset_ref
from cvops.data.validation import ValidationReport
from cvops.data.versioning import data_version, reproduce


@step
def load_dataset(validation: ValidationReport) -> Annotated[DatasetRef, "dataset"]:
    """Prepare the validated data through DVC (skipped when unchanged); the reference names its DVC version."""
    project = Project.find()
    reproduce(project, "prepare")
    return load_dataset_ref(project.prepared_dir, data_version(project))
