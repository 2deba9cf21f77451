from typing import Annotated

from zenml import step

from cvops.config import MeasureParams, QuantizeParams
from cvops.data.prepare import DatasetRef
from cvops.evaluation.reports import QuantizationReport
from cvops.registry.tracking import TrainedModel
from cvops.registry.versions import export_model


@step(experiment_tracker=True)
def quantize_model(
    trained: TrainedModel, dataset: DatasetRef, quantize: QuantizeParams, measure: MeasureParams, seed: int
) -> Annotated[QuantizationReport, "quantization"]:
    """ONNX fp32 (parity-checked) and static int8, both measured; the report names the artifact that ships."""
    return export_model(trained, dataset, quantize, measure, seed)
