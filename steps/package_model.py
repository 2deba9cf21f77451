from typing import Annotated

from zenml import step

from cvops.config import Params, Project
from cvops.gate import GateDecision
from cvops.registry import ModelRegistry
from cvops.serving.packaging import build_bento, store_model
from cvops.serving.source import resolve


@step(experiment_tracker=True)  # the tracker points MLflow at the registry
def package_model(version: str, decision: GateDecision, params: Params) -> Annotated[str, "bento"]:
    """A passing version's shipped ONNX into BentoML's store and a bento (tagged on the version); a failing
    version is not packaged (empty tag)."""
    if not decision.passed:
        return ""
    project = Project.find()
    registry = ModelRegistry(params.registry.model_name, project.registry_lock)
    served = resolve(registry, version, project.bentoml_home / "onnx")
    model_tag = store_model(served, registry.get(version).tags)
    bento_tag = build_bento(model_tag, version)
    registry.tag(version, {"bento": bento_tag, "bentoml_model": model_tag})
    return bento_tag
