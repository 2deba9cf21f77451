"""Which model the service answers with: a registry alias or version, resolved to its shipped ONNX file."""

from pathlib import Path

import mlflow
from pydantic import BaseModel

from cvops.errors import ModelError, RegistryError
from cvops.registry import ModelRegistry


class ServedModel(BaseModel):
    model_name: str
    version: str
    onnx_path: str
    lineage_id: str  # the MLflow run that produced it: params, data version, commit, evidence


def resolve(registry: ModelRegistry, selector: str, cache_dir: Path) -> ServedModel:
    """`selector` is an alias (champion, challenger, previous) or a version number."""
    info = registry.get(selector) if selector.isdigit() else registry.alias(selector)
    if info is None:
        raise RegistryError(
            f"{registry.name} has no '{selector}': promote a version (`cvops models promote V --reviewer NAME`) "
            "or serve one with --version V"
        )
    uri = info.tags.get("onnx_shipped")
    if not uri:
        raise ModelError(f"version {info.version} has no ONNX artifact: run `cvops quantize --version {info.version}`")
    target = cache_dir / info.version
    local = target / Path(uri).name
    if not local.is_file():
        target.mkdir(parents=True, exist_ok=True)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    return ServedModel(model_name=registry.name, version=info.version, onnx_path=str(local), lineage_id=info.run_id)
