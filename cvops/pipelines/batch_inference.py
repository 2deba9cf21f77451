from zenml import pipeline

from cvops.config import Params
from cvops.steps.batch_predict import batch_predict


@pipeline(name="batch_inference", enable_cache=False)
def batch_inference(location: str, output: str, selector: str, params: Params) -> None:
    """A folder or s3:// prefix of images -> predictions file (label, score, model version; a detector's boxes)
    + MLflow counts + inference log."""
    batch_predict(location, output, selector, params.registry, params.serve, params.distributed, params.detect)
