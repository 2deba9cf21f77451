"""The files of a registered version, downloaded once into the local cache: the shipped ONNX file that a
selector (an alias such as champion, or a version number) resolves to, and the monitoring reference."""

import contextlib
import shutil
import tempfile
from pathlib import Path

import mlflow
from pydantic import BaseModel

from cvops.errors import ModelError
from cvops.registry.model_registry import REFERENCE_TAG, SHIPPED_TAG, ModelRegistry
from cvops.serving.projection import PROJECTION_FILE


class ServedModel(BaseModel):
    model_name: str
    version: str
    onnx_path: str
    lineage_id: str  # the MLflow run that produced it: params, data version, commit, evidence
    reference_uri: str | None = None  # its monitoring reference (MLflow artifact folder), if it has one
    projection_path: str | None = None  # the reference's embedding projection, in the downloaded reference


def resolve(registry: ModelRegistry, selector: str, cache_dir: Path) -> ServedModel:
    """`selector` is an alias (champion, challenger, previous) or a version number (`ModelRegistry.resolve`)."""
    info = registry.resolve(selector)
    uri = info.tags.get(SHIPPED_TAG)
    if not uri:
        raise ModelError(f"version {info.version} has no ONNX artifact: run `cvops quantize {info.version}`")
    target = cache_dir / info.version
    local = target / Path(uri).name
    if not local.is_file():
        target.mkdir(parents=True, exist_ok=True)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    served = ServedModel(
        model_name=registry.name,
        version=info.version,
        onnx_path=str(local),
        lineage_id=info.run_id,
        reference_uri=info.tags.get(REFERENCE_TAG),
    )
    if served.reference_uri:  # the service projects embeddings with the very file monitoring compares against
        served.projection_path = str(reference_dir(served, cache_dir) / PROJECTION_FILE)
    return served


def reference_dir(served: ServedModel, cache_dir: Path) -> Path:
    """The version's monitoring reference folder, downloaded once into the cache."""
    if not served.reference_uri:
        raise ModelError(
            f"version {served.version} has no monitoring reference (registered before monitoring existed): "
            f"run `cvops quantize {served.version}` to build it"
        )
    target = cache_dir / served.version / "reference"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".reference-", dir=target.parent))
        mlflow.artifacts.download_artifacts(artifact_uri=served.reference_uri, dst_path=str(partial))
        with contextlib.suppress(OSError):  # another process renamed its identical copy first
            (partial / Path(served.reference_uri).name).rename(target)
        shutil.rmtree(partial, ignore_errors=True)
    return target


def forget(cache_dir: Path, version: str) -> None:
    """Drop a version's cached files (after its ONNX files and reference were rebuilt)."""
    shutil.rmtree(cache_dir / version, ignore_errors=True)
