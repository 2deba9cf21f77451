from zenml import pipeline

from cvops.config import Params
from cvops.registry.tracking import TrainedModel
from cvops.registry.versions import VersionOrigin
from cvops.steps import (
    build_reference,
    check_gate,
    evaluate_model,
    load_dataset,
    package_model,
    quantize_model,
    register_model,
    train_model,
    validate_data,
)


@pipeline(name="training", enable_cache=False)
def training(
    params: Params, resume: bool = False, trigger: dict[str, str] | None = None, teacher: TrainedModel | None = None
) -> None:
    """Validated data -> prepared dataset (DVC) -> trained model -> evidence -> ONNX fp32/int8 -> gate
    -> monitoring reference -> registered version -> bento.

    `trigger` tags the version: when drift monitoring started the run (episode, reason, report), and a
    distilled student's teacher. With a `teacher`, the model trained is the student of `params.distill`.

    The data steps read their params from params.yaml through DVC; `params` feeds the rest, a step the
    sections it uses.
    """
    validation = validate_data()
    dataset = load_dataset(validation)
    trained = train_model(dataset, params, resume, teacher)
    evaluation = evaluate_model(
        trained,
        dataset,
        params.base,
        params.evaluate,
        params.measure,
        params.gate.min_invariance,
        params.registry,
        params.detect,
    )
    quantization = quantize_model(trained, dataset, params.quantize, params.measure, params.base.seed)
    decision = check_gate(evaluation, quantization, params.gate)
    reference = build_reference(dataset, quantization, params.monitor, params.detect)
    origin = VersionOrigin(data_source=params.data.source, trigger=trigger)
    version = register_model(trained, dataset, evaluation, quantization, decision, reference, params.registry, origin)
    package_model(version, decision, params.registry)
