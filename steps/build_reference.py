from pathlib import Path
from typing import Annotated

from zenml import step

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.evidence import log_reference
from cvops.monitoring import reference
from cvops.monitoring.reference import ReferenceSummary
from cvops.quantization import QuantizationReport
from cvops.tracking import scratch_dir


@step(experiment_tracker=True)
def build_reference(
    dataset: DatasetRef, quantization: QuantizationReport, params: Params
) -> Annotated[ReferenceSummary, "monitoring_reference"]:
    """The shipped model's view of the train split (statistics, projected embeddings, predictions): what
    monitoring compares served traffic against. Logged to the run and attached to the version."""
    summary = reference.build_reference(
        Path(quantization.shipped_artifact.path), dataset, scratch_dir() / "reference", params.monitor.embedding_dims
    )
    log_reference(summary)
    return summary
