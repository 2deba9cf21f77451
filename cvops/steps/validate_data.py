from typing import Annotated

import mlflow
from zenml import step

from cvops.config import Project
from cvops.data.validation import ValidationReport
from cvops.data.versioning import reproduce


@step(experiment_tracker=True)
def validate_data() -> Annotated[ValidationReport, "validation_report"]:
    """Import (if stale) and validate the data through DVC; the report goes to MLflow, pass or fail."""
    project = Project.find()
    try:
        reproduce(project, "validate")
    finally:
        for name in ("validation.json", "validation.html"):
            if (project.reports_dir / name).is_file():
                mlflow.log_artifact(str(project.reports_dir / name), artifact_path="validation")
    return ValidationReport.model_validate_json((project.reports_dir / "validation.json").read_text())
