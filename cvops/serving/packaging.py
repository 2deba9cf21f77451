"""Packaging: the shipped ONNX file into BentoML's model store, and a bento that serves it offline."""

import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import cvops
from cvops import tasks
from cvops.config import Project
from cvops.console import quiet
from cvops.env import BENTO_MODEL_ENV
from cvops.export.onnx_model import Preprocessing, read_preprocessing
from cvops.registry.artifacts import ServedModel, resolve
from cvops.registry.model_registry import BENTO_TAG, BENTOML_MODEL_TAG, ModelRegistry
from cvops.serving.kubernetes import write_serving_manifests
from cvops.serving.predictor import MODEL_FILE
from cvops.serving.projection import PROJECTION_FILE

# What the service imports when it serves a packaged model, pinned as installed (the bento installs them; no
# resolver runs offline). No torch: a bento serves the ONNX file with onnxruntime.
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


def pinned(packages: tuple[str, ...]) -> list[str]:
    """`packages` at the versions installed here (this repository installs requirements.lock's): the bento
    installs what the model was packaged with, and no resolver runs offline."""
    return [f"{name}=={metadata.version(name)}" for name in packages]


def build_bento(
    model_tag: str, version: str, name: str, task: str, params_file: Path, runtime: str = "onnxruntime"
) -> str:
    """A bento called `name`, serving `model_tag` (a model of `task`) from the model store (CVOPS_BENTO_MODEL),
    with cvops's sources as installed and the project's `params_file`; OpenVINO installed too when it is the
    `runtime` (serve.runtime)."""
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema  # the type bentos.build() expects
    from pydantic.json_schema import PydanticJsonSchemaWarning

    # BentoML narrates the build at INFO, and pydantic warns that the API's optional file field has no
    # JSON-schema default: neither is for the user
    with (
        tempfile.TemporaryDirectory(prefix="cvops-bento-") as context,
        quiet("bentoml", "_bentoml_sdk"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        _stage_build_context(Path(context), params_file)
        packages = SERVING_PACKAGES + (("openvino", "onnx") if runtime == "openvino" else ())
        bento = bentoml.bentos.build(
            tasks.task(task).service,
            name=name,
            labels={"model_version": version},
            include=["/cvops/**/*.py", "/params.yaml"],
            python={"packages": pinned(packages), "lock_packages": False},
            envs=[
                BentoEnvSchema(name=BENTO_MODEL_ENV, value=model_tag),
                BentoEnvSchema(name="BENTOML_DO_NOT_TRACK", value="true"),
            ],
            models=[model_tag],
            build_ctx=context,
        )
    return str(bento.tag)


def _stage_build_context(context: Path, params_file: Path) -> None:
    """The bento's build context: the cvops package this process runs (from a wheel or from this repository)
    and the project's params.yaml, wherever each lives."""
    source = Path(cvops.__file__).parent
    shutil.copytree(source, context / "cvops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(params_file, context / "params.yaml")


def package_version(registry: ModelRegistry, version: str, project: Project, bento_name: str) -> tuple[str, str, Path]:
    """A version's shipped ONNX file into BentoML's store and a bento that serves it, both tagged on the
    version, and the Kubernetes manifests for the bento's image; returns (model tag, bento tag, manifests)."""
    served = resolve(registry, version, project.onnx_cache)
    preprocessing = read_preprocessing(Path(served.onnx_path))
    model_tag = store_model(served, preprocessing, registry.get(served.version).tags)
    runtime = project.params().serve.runtime
    bento_tag = build_bento(model_tag, served.version, bento_name, preprocessing.task, project.params_file, runtime)
    registry.tag(served.version, {BENTO_TAG: bento_tag, BENTOML_MODEL_TAG: model_tag})
    return model_tag, bento_tag, write_serving_manifests(project.manifests_dir, bento_name, served.version)
