from zenml import pipeline

from cvops.config import Params
from cvops.registry.tracking import TrainedModel
from cvops.registry.versions import VersionOrigin
from cvops.steps.audit_data import audit_data
from cvops.steps.build_reference import build_reference
from cvops.steps.check_gate import check_gate
from cvops.steps.evaluate_model import evaluate_model
from cvops.steps.load_dataset import load_dataset
from cvops.steps.package_model import package_model
from cvops.steps.quantize_model import quantize_model
from cvops.steps.register_model import register_model
from cvops.steps.train_model import train_model
from cvops.steps.validate_data import validate_data


@pipeline(name="training", enable_cache=False)
def training(
    params: Params, resume: bool = False, trigger: dict[str, str] | None = None, teacher: TrainedModel | None = None
) -> None:
    """Validated data -> prepared dataset (DVC) -> data audit -> trained model -> evidence -> ONNX fp32/int8 (and
    a pruned copy's, with prune.enabled) -> gate (the audit's leakage too) -> monitoring reference -> registered
    version -> bento.

    `trigger` tags the version: when drift monitoring started the run (episode, reason, report), and a
    distilled student's teacher. With a `teacher`, the model trained is the student of `params.distill`.

    The data steps read their params from params.yaml through DVC; `params` feeds the rest, a step the
    sections it uses.
    """
    validation = validate_data()
    dataset = load_dataset(validation)
    audit = audit_data(dataset, params)
    trained = train_model(dataset, params, resume, teacher, after=audit)
    evaluation = evaluate_model(trained, dataset, params)
    quantization = quantize_model(trained, dataset, params)
    decision = check_gate(evaluation, quantization, params.gate, audit)
    reference = build_reference(dataset, quantization, params.monitor, params.detect)
    origin = VersionOrigin(data_source=params.data.source, trigger=trigger)
    version = register_model(trained, dataset, evaluation, quantization, decision, reference, params.registry, origin)
    package_model(version, decision, params.registry)
