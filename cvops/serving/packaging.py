"""Packaging: the shipped ONNX file into BentoML's model store, and a bento that serves it offline."""

import shutil
import warnings
from pathlib import Path

from cvops import tasks
from cvops.console import quiet
from cvops.env import BENTO_MODEL_ENV
from cvops.export.onnx_model import Preprocessing, read_preprocessing
from cvops.registry.artifacts import ServedModel, resolve
from cvops.registry.model_registry import BENTO_TAG, BENTOML_MODEL_TAG, ModelRegistry
from cvops.serving.kubernetes import write_serving_manifests
from cvops.serving.predictor import MODEL_FILE
from cvops.serving.projection import PROJECTION_FILE

# What the service imports when it serves a packaged model, pinned as in requirements.lock (the bento installs
# them; no resolver runs offline). No torch: a bento serves the ONNX file with onnxruntime.
# psycopg2: replicas log to the team's state database (CVOPS_STATE_URL); fsspec, s3fs: captured images
# (serve.capture) go to a folder or an S3 prefix.
SERVING_PACKAGES = (
    "bentoml",
    "onnxruntime",
    "numpy",
    "pillow",
    "pydantic",
    "pyyaml",
    "prometheus-client",
    "psycopg2-binary",
    "fsspec",
    "s3fs",
)


def store_model(served: ServedModel, preprocessing: Preprocessing, lineage: dict[str, str]) -> str:
    """Copy the ONNX file into BentoML's model store, labelled with its registry version; returns the tag."""
    import bentoml

    labels = {"model_version": served.version, "registered_model": served.model_name, "lineage_id": served.lineage_id}
    metadata = {
        **lineage,
        "class_names": preprocessing.class_names,
        "image_size": preprocessing.image_size,
        "task": preprocessing.task,
    }
    with bentoml.models.create(served.model_name, labels=labels, metadata=metadata) as model:
        shutil.copy(served.onnx_path, model.path_of(MODEL_FILE))
        if served.projection_path:  # the embeddings the service logs are reduced with the version's projection
            shutil.copy(served.projection_path, model.path_of(PROJECTION_FILE))
    return str(model.tag)


def pinned(packages: tuple[str, ...], lock: Path) -> list[str]:
    def canonical(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    pairs = (line.split("==", 1) for line in lock.read_text().splitlines() if "==" in line)
    versions = {canonical(name): version.strip() for name, version in pairs}
    return [f"{name}=={versions[name]}" if name in versions else name for name in packages]


def source_root() -> Path:
    """The cvops checkout the package runs from (sources, params.yaml, requirements.lock): the build context."""
    return Path(__file__).resolve().parents[2]


def build_bento(model_tag: str, version: str, name: str, task: str) -> str:
    """A bento called `name`, serving `model_tag` (a model of `task`) from the model store (CVOPS_BENTO_MODEL)."""
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema  # the type bentos.build() expects
    from pydantic.json_schema import PydanticJsonSchemaWarning

    root = source_root()
    # BentoML narrates the build at INFO, and pydantic warns that the API's optional file field has no
    # JSON-schema default: neither is for the user
    with quiet("bentoml", "_bentoml_sdk"), warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        bento = bentoml.bentos.build(
            tasks.task(task).service,
            name=name,
            labels={"model_version": version},
            include=["/cvops/**/*.py", "/params.yaml"],
            python={"packages": pinned(SERVING_PACKAGES, root / "requirements.lock"), "lock_packages": False},
            envs=[
                BentoEnvSchema(name=BENTO_MODEL_ENV, value=model_tag),
                BentoEnvSchema(name="BENTOML_DO_NOT_TRACK", value="true"),
            ],
            models=[model_tag],
            build_ctx=str(root),
        )
    return str(bento.tag)


def package_version(
    registry: ModelRegistry, version: str, cache_dir: Path, bento_name: str, manifests_dir: Path
) -> tuple[str, str, Path]:
    """A version's shipped ONNX file into BentoML's store and a bento that serves it, both tagged on the
    version, and the Kubernetes manifests for the bento's image; returns (model tag, bento tag, manifests)."""
    served = resolve(registry, version, cache_dir)
    preprocessing = read_preprocessing(Path(served.onnx_path))
    model_tag = store_model(served, preprocessing, registry.get(served.version).tags)
    bento_tag = build_bento(model_tag, served.version, bento_name, preprocessing.task)
    registry.tag(served.version, {BENTO_TAG: bento_tag, BENTOML_MODEL_TAG: model_tag})
    return model_tag, bento_tag, write_serving_manifests(manifests_dir, bento_name, served.version)
