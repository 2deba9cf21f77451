from zenml import pipeline

from cvops.config import Params
from steps import evaluate_model, load_dataset, register_model, train_model, validate_data


@pipeline(name="training", enable_cache=False)
def training(params: Params, resume: bool = False) -> None:
    """Validated data -> prepared dataset (DVC) -> trained model -> test metrics -> registered version.

    The data steps read their params from params.yaml through DVC; `params` feeds the rest.
    """
    validation = validate_data()
    dataset = load_dataset(validation)
    trained = train_model(dataset, params, resume)
    metrics = evaluate_model(trained, dataset, params.base.device, params.base.seed)
    register_model(trained, metrics, params.registry.model_name)
