"""Batch inference on Ray Data (`distributed.engine: ray`): `score_inputs`'s work on a pool of Ray actors.

What travels where:
- the model: the shipped ONNX file (and the monitoring projection) as bytes, through Ray's object store, so a
  worker needs no access to the MLflow store or the driver's disk;
- the images: the scoring actors read them where they are listed, so every node must be able to read them
  there: an s3:// prefix with the same AWS_* variables (the team secret on KubeRay's pods), or a folder at
  the same path (any folder on one machine; a shared volume on a cluster). A file a node cannot read keeps
  its row, with the reason in its error column, as an unreadable image does.
"""

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cvops.config import DistributedParams, ServeParams
from cvops.serving.batch import list_inputs, predictions_frame, score_files
from cvops.serving.loading import ModelFiles, load
from cvops.serving.predictor import MODEL_FILE
from cvops.serving.projection import PROJECTION_FILE
from cvops.stack.distributed import ray_session
from cvops.tasks.detection.postprocess import PostProcess

if TYPE_CHECKING:
    import pandas as pd
    import ray

    from cvops.registry.artifacts import ServedModel
    from cvops.serving.predictor import Predictor

T = TypeVar("T")


class _Scorer:
    """A Ray Data actor: one onnxruntime session, fed batches of (name, path) rows, returning one JSON row per
    file (the same rows as the local engine's)."""

    def __init__(self, model: dict[str, Any], files: "ray.ObjectRef", max_pixels: int, threads: int):
        self.predictor = load_shipped(model, files, threads)
        self.max_pixels = max_pixels

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        import pandas as pd

        rows = score_files(self.predictor, zip(batch["name"], batch["path"], strict=True), self.max_pixels)
        return pd.DataFrame({"row": [json.dumps(row) for row in rows]})


def shipped(served: "ServedModel", max_batch: int, post: PostProcess) -> dict[str, Any]:
    """What an actor loads a version's predictor from (`load_shipped`): its identity, and its shipped ONNX file
    (and monitoring projection) as bytes in Ray's object store, so a worker needs no access to the MLflow store
    or the driver's disk."""
    import ray

    files = {MODEL_FILE: Path(served.onnx_path).read_bytes()}
    if served.projection_path:
        files[PROJECTION_FILE] = Path(served.projection_path).read_bytes()
    model = {
        "model_name": served.model_name,
        "version": served.version,
        "lineage_id": served.lineage_id,
        "max_batch": max_batch,
        "post": post,
    }
    return {"model": model, "files": ray.put(files)}


def load_shipped(model: dict[str, Any], files: "ray.ObjectRef", threads: int) -> "Predictor":
    """In an actor: the predictor of what `shipped` put in the object store, fetched by reference (an actor
    restarted elsewhere fetches it again), written to a temporary folder, loaded in memory and the folder removed
    at once."""
    import ray

    contents: dict[str, bytes] = ray.get(files)
    with tempfile.TemporaryDirectory(prefix="cvops-model-") as folder:
        paths = {name: Path(folder) / name for name in contents}
        for name, data in contents.items():
            paths[name].write_bytes(data)
        return load(
            ModelFiles(
                paths[MODEL_FILE],
                model["model_name"],
                model["version"],
                model["lineage_id"],
                paths.get(PROJECTION_FILE),
            ),
            model["max_batch"],
            model["post"],
            threads=threads,
        )


def on_cluster(distributed: DistributedParams, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` here, the driver of a Ray Data pipeline; through Ray Client (a ray:// address), where Ray Data
    cannot run its executor, as one task on the cluster (it reserves no CPU), its result sent back."""
    import ray

    if (distributed.address or "").startswith("ray://"):
        return ray.get(ray.remote(num_cpus=0)(work).remote(*args))
    return work(*args)


def score_on_ray(
    served: "ServedModel", location: str, serve: ServeParams, distributed: DistributedParams, post: PostProcess
) -> "pd.DataFrame":
    """`score_inputs` on Ray Data: `batch_workers` actors read, decode, preprocess and score the files with the
    shipped ONNX file. One row per file, whatever the order the batches come back in; Ray retries
    the tasks and restarts the actors of a node that dies, so no row is lost or repeated.

    Through Ray Client (a ray:// address), where Ray Data cannot run its executor, the same work runs as one
    task on the cluster (it reserves no CPU) and sends the rows back."""
    files = [{"name": name, "path": path} for name, path in list_inputs(location)]
    sized_by = "distributed.batch_workers, distributed.cpus_per_worker"
    with ray_session(distributed, distributed.batch_workers, {"CPU": distributed.cpus_per_worker}, sized_by):
        scorer = {
            **shipped(served, serve.max_batch_images, post),
            "max_pixels": serve.max_image_pixels,
            "threads": max(1, math.floor(distributed.cpus_per_worker)),
        }
        rows = on_cluster(distributed, _score, files, scorer, serve, distributed)
    return predictions_frame(rows, served.version)


def _score(
    files: list[dict[str, str]], scorer: dict[str, Any], serve: ServeParams, distributed: DistributedParams
) -> list[dict[str, Any]]:
    """The Ray Data pipeline: the paths in blocks, each block read and scored by an actor of the pool, the rows
    collected. The actors read the files themselves: `read_binary_files` would run read tasks that need CPUs
    beside the actors (with none left the run waits for ever) and send every file through the object store,
    and on small images it is no faster (20,000 Fashion-MNIST files: 15 s to read alone on this machine)."""
    import ray

    dataset = ray.data.from_items(files)
    scored = dataset.map_batches(
        _Scorer,
        fn_constructor_kwargs=scorer,
        batch_size=serve.max_batch_images,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=distributed.batch_workers),
        num_cpus=distributed.cpus_per_worker,
    )
    return [json.loads(row) for batch in scored.iter_batches(batch_format="pandas") for row in batch["row"]]
