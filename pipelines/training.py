from zenml import pipeline

from cvops.config import Params
from steps import evaluate_model, load_dataset, register_model, train_model


@pipeline(name="training", enable_cache=False)
def training(params: Params, resume: bool = False) -> None:
    """Raw images -> prepared dataset -> trained model -> test metrics -> registered version."""
    dataset = load_dataset(params.prepare, params.base.seed)
    trained = train_model(dataset, params, resume)
    metrics = evaluate_model(trained, dataset, params.base.device)
    register_model(trained, metrics, params.registry.model_name)
