from typing import Annotated

from zenml import step

from cvops.config import DetectParams, MonitorParams
from cvops.data.prepare import DatasetRef
from cvops.evaluation.reports import QuantizationReport
from cvops.monitoring.reference import ReferenceSummary
from cvops.registry.versions import monitoring_reference


@step(experiment_tracker=True)
def build_reference(
    dataset: DatasetRef, quantization: QuantizationReport, monitor: MonitorParams, detect: DetectParams
) -> Annotated[ReferenceSummary, "monitoring_reference"]:
    """The shipped model's view of the training data (statistics, projected embeddings, predictions): what
    monitoring compares served traffic against. Logged to the run and attached to the version."""
    return monitoring_reference(quantization, dataset, monitor.embedding_dims, detect.served)
