from typing import Annotated

from zenml import step

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.evidence import log_quantization
from cvops.quantization import QuantizationReport, quantize
from cvops.tracking import TrainedModel, load_trained_model, scratch_dir


@step(experiment_tracker=True)
def quantize_model(
    trained: TrainedModel, dataset: DatasetRef, params: Params
) -> Annotated[QuantizationReport, "quantization"]:
    """ONNX fp32 (parity-checked) and static int8, both measured; the report names the artifact that ships."""
    report = quantize(load_trained_model(trained), dataset, scratch_dir(), params.quantize, params.base.seed)
    log_quantization(report)
    return report
