from typing import Annotated

from zenml import step

from cvops.config import Params, Project
from cvops.data.audit import DataAudit
from cvops.data.audit_report import audit_project
from cvops.data.prepare import DatasetRef
from cvops.registry.evidence import log_audit


@step(experiment_tracker=True)
def audit_data(dataset: DatasetRef, params: Params) -> Annotated[DataAudit, "data_audit"]:
    """Audit the prepared data (label errors, near-duplicates, leakage, outliers) before training; the counts
    and the reports go to MLflow, and the gate reads the leakage."""
    project = Project.find()
    audit, _ = audit_project(project, dataset, params)
    log_audit(audit, project.reports_dir)
    return audit
