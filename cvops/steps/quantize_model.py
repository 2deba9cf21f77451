from typing import Annotated

from zenml import step

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.evaluation.reports import QuantizationReport
from cvops.registry.tracking import TrainedModel
from cvops.registry.versions import export_model


@step(experiment_tracker=True)
def quantize_model(
    trained: TrainedModel, dataset: DatasetRef, params: Params
) -> Annotated[QuantizationReport, "quantization"]:
    """ONNX fp32 (parity-checked) and static int8, with prune.enabled a pruned and fine-tuned copy's too (params:
    quantize, prune, measure), all measured; the report names the artifact that ships."""
    return export_model(trained, dataset, params)
