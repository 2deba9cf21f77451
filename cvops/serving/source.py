"""Which model the service answers with: a registry alias or version, resolved to its shipped ONNX file."""

from pathlib import Path

import mlflow
from pydantic import BaseModel

from cvops.errors import ModelError, RegistryError
from cvops.monitoring.reference import PROJECTION_FILE
from cvops.registry import ModelRegistry

REFERENCE_TAG = "reference"  # model-version tag: the MLflow URI of the version's monitoring reference folder


class ServedModel(BaseModel):
    model_name: str
    version: str
    onnx_path: str
    lineage_id: str  # the MLflow run that produced it: params, data version, commit, evidence
    reference_uri: str | None = None  # its monitoring reference (MLflow artifact folder), if it has one
    projection_path: str | None = None  # the reference's embedding projection, downloaded beside the ONNX file


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
    reference = info.tags.get(REFERENCE_TAG)
    projection = target / PROJECTION_FILE
    if reference and not projection.is_file():
        mlflow.artifacts.download_artifacts(artifact_uri=f"{reference}/{PROJECTION_FILE}", dst_path=str(target))
    return ServedModel(
        model_name=registry.name, version=info.version, onnx_path=str(local), lineage_id=info.run_id,
        reference_uri=reference, projection_path=str(projection) if reference else None,
    )  # fmt: skip


def reference_dir(served: ServedModel, cache_dir: Path) -> Path:
    """The version's monitoring reference folder, downloaded once into the cache."""
    if not served.reference_uri:
        raise ModelError(
            f"version {served.version} has no monitoring reference (registered before monitoring existed): "
            f"run `cvops quantize --version {served.version}` to build it"
        )
    target = cache_dir / served.version / "reference"
    if not target.is_dir():
        partial = cache_dir / served.version / "reference.partial"
        partial.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=served.reference_uri, dst_path=str(partial))
        Path(partial / "reference").rename(target)
        partial.rmdir()
    return target
