from typing import Annotated

from zenml import step

from cvops.config import Project, RegistryParams
from cvops.evaluation.gate import GateDecision
from cvops.registry.model_registry import ModelRegistry
from cvops.serving.packaging import package_version


@step(experiment_tracker=True)  # the tracker points MLflow at the registry
def package_model(version: str, decision: GateDecision, registry: RegistryParams) -> Annotated[str, "bento"]:
    """A passing version's shipped ONNX into BentoML's store and a bento (tagged on the version); a failing
    version is not packaged (empty tag)."""
    if not decision.passed:
        return ""
    project = Project.find()
    _, bento, _ = package_version(ModelRegistry.of(project, registry.model_name), version, project, registry.bento_name)
    return bento
