"""Many videos on Ray Data (`distributed.engine: ray`): each video a row, tracked by an actor of a pool of
`distributed.batch_workers`, each actor with the version's predictor loaded once (as batch inference's
scorers load it: the shipped ONNX file as bytes through the object store).

What travels where:
- the videos: an actor reads each where it is listed, as batch inference's scorers read images: an s3:// prefix
  with the same AWS_* variables on every node, or a folder at the same path on every node;
- the outputs: an actor writes a video's outputs in a scratch folder of its node and returns them as bytes,
  with the sampled inference-log rows; the driver writes them under the job's output folder, `summary.json`
  last, once the video is done. So a node needs no access to the driver's disk, and a video whose node dies
  leaves nothing half written: Ray runs it again on another actor. A job stopped mid-way (SIGTERM) keeps the
  videos already written, each whole; unlike the local engine, a video still being tracked leaves nothing.
"""

import math
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvops.config import DistributedParams, VideoParams
from cvops.serving.on_ray import load_shipped, on_cluster, shipped
from cvops.serving.video.job import track_one
from cvops.serving.video.output import SUMMARY, clear
from cvops.stack.distributed import ray_session
from cvops.tasks.detection.postprocess import PostProcess

if TYPE_CHECKING:
    import pandas as pd
    import ray

    from cvops.registry.artifacts import ServedModel


class _Tracker:
    """A Ray Data actor: one predictor, fed one video at a time; returns its summary (or error), the files of
    its outputs and its sampled log rows."""

    def __init__(
        self,
        model: dict[str, Any],
        files: "ray.ObjectRef",
        threads: int,
        params: VideoParams,
        post: PostProcess,
        seed: int,
    ) -> None:
        self.predictor = load_shipped(model, files, threads)
        self.params, self.post, self.seed = params, post, seed

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        import pandas as pd

        rows = [self._track(video) for video in batch["video"]]
        return pd.DataFrame({"video": list(batch["video"]), "result": rows})

    def _track(self, video: str) -> bytes:
        logged: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="cvops-video-") as scratch:
            folder = Path(scratch) / "out"
            summary = track_one(self.predictor, video, folder, self.params, self.post, self.seed, None, logged.extend)
            outputs = {path.name: path.read_bytes() for path in folder.iterdir()} if folder.is_dir() else {}
        return pickle.dumps({"summary": summary, "outputs": outputs, "logged": logged})


def track_on_ray(
    served: "ServedModel",
    folders: dict[str, Path],
    params: VideoParams,
    post: PostProcess,
    seed: int,
    distributed: DistributedParams,
    logged: Callable[[list[dict[str, Any]]], object],
) -> list[dict[str, Any]]:
    """Every video of `folders` (where to read it -> its output folder) tracked on Ray: each video's summary, or
    why it could not be read, in the order of `folders`; its outputs written to its folder as it comes back,
    its sampled frames to `logged`."""
    sized_by = "distributed.batch_workers, distributed.cpus_per_worker"
    with ray_session(distributed, distributed.batch_workers, {"CPU": distributed.cpus_per_worker}, sized_by):
        tracker = {
            **shipped(served, params.batch_frames, post),
            "threads": max(1, math.floor(distributed.cpus_per_worker)),
            "params": params,
            "post": post,
            "seed": seed,
        }
        if (distributed.address or "").startswith("ray://"):  # the outputs come back with the task's result
            returned = on_cluster(distributed, _results, list(folders), tracker, distributed)
            summaries = {video: _write(result, folders[video], logged) for video, result in returned}
        else:
            summaries = {
                video: _write(result, folders[video], logged)
                for video, result in _tracked(list(folders), tracker, distributed)
            }
    return [summaries[video] for video in folders]


def _tracked(videos: list[str], tracker: dict[str, Any], distributed: DistributedParams) -> Iterator[tuple[str, bytes]]:
    """(video, pickled result) of each video as the actors finish them: one video per batch, so that a video
    is retried whole and never waits behind another on one actor while a second actor is free."""
    import ray

    dataset = ray.data.from_items([{"video": video} for video in videos], override_num_blocks=len(videos))
    results = dataset.map_batches(
        _Tracker,
        fn_constructor_kwargs=tracker,
        batch_size=1,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=distributed.batch_workers),
        num_cpus=distributed.cpus_per_worker,
    )
    for batch in results.iter_batches(batch_size=1, batch_format="pandas"):
        yield from zip(batch["video"], batch["result"], strict=True)


def _results(videos: list[str], tracker: dict[str, Any], distributed: DistributedParams) -> list[tuple[str, bytes]]:
    """`_tracked` as one list: a Ray Client driver's result."""
    return list(_tracked(videos, tracker, distributed))


def _write(result: bytes, folder: Path, logged: Callable[[list[dict[str, Any]]], object]) -> dict[str, Any]:
    """A video's outputs, as its actor returned them, into its folder (the summary last: the mark of a video
    written whole); its log rows to `logged`. Its summary, or its error."""
    returned = pickle.loads(result)
    if returned["outputs"]:
        clear(folder)
        for name, data in sorted(returned["outputs"].items(), key=lambda item: item[0] == SUMMARY):
            (folder / name).write_bytes(data)
    logged(returned["logged"])
    summary: dict[str, Any] = returned["summary"]
    return summary
