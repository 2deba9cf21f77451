"""Training on Ray Train (`distributed.engine: ray`): cvops's training loop in `train_workers` processes joined
in a DDP process group (gloo on CPUs, NCCL on GPUs), on a local Ray instance or a cluster.

What travels where:
- the prepared data: the driver reads the train and val splits and puts them in Ray's object store once;
  every worker fetches them from there, on whichever node it runs, so no node needs the checkout or the DVC
  cache;
- checkpoints: rank 0 reports one per epoch (cvops's own checkpoint file) to Ray Train's storage,
  `distributed.storage`, a folder every node reads and writes; null keeps them in the project's checkpoints
  folder, which serves a cluster on this machine only. When a worker or its node dies, Ray Train restarts
  the group from the last of them (up to `distributed.max_failures` times); `--resume` continues a run
  stopped some other way. The trained model comes back through the last checkpoint: its best weights;
- metrics: rank 0 logs each epoch's to the step's MLflow run itself.
"""

import logging
import math
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvops.config import DistributedParams, Params
from cvops.data.prepare import DatasetRef
from cvops.env import go_offline
from cvops.errors import CvopsError, DataError, ModelError, ServiceUnavailable
from cvops.stack.distributed import ray_session
from cvops.training.trainer import (
    Checkpoints,
    MetricsCallback,
    Splits,
    TrainResult,
    new_model,
    process_group,
    read_checkpoint,
    run_checkpoints,
    train_model,
    training_inputs,
    training_splits,
    write_checkpoint,
)

if TYPE_CHECKING:
    import ray.train
    import ray.train.torch

log = logging.getLogger(__name__)
SIZED_BY = "distributed.train_workers, cpus_per_worker, gpus_per_worker"
# what Ray Train restores a run from: the checkpoints it registered (ray.train.v2._internal.constants)
SNAPSHOT = "checkpoint_manager_snapshot.json"
NODE_DEATH_S = 30.0  # Ray declares a node dead after 5 missed health checks, 3 s apart


class _ReportedCheckpoints:
    """cvops's checkpoints, kept by Ray Train: each epoch rank 0 reports its checkpoint file (with the process
    group's size and backend, read live), the other ranks report without one (a report is a barrier)."""

    def __init__(self, run_key: str) -> None:
        self.run_key = run_key

    def latest(self) -> dict[str, Any]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            raise ModelError("--resume: Ray Train has no checkpoint for this run; run without --resume")
        return _read(checkpoint, self.run_key)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        import ray.train

        rank, world, backend = process_group()
        if rank != 0:
            ray.train.report({"epoch": epoch})
            return
        with tempfile.TemporaryDirectory(prefix="cvops-checkpoint-") as folder:
            write_checkpoint(Path(folder), epoch, {**state, "world_size": world, "backend": backend}, self.run_key)
            ray.train.report({"epoch": epoch}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _read(checkpoint: "ray.train.Checkpoint", run_key: str) -> dict[str, Any]:
    with checkpoint.as_directory() as folder:
        return read_checkpoint(next(Path(folder).glob("epoch_*.pt")), run_key)


def _train_worker(config: dict[str, Any]) -> None:
    """One rank: fetch the data, build the model as `fit` does, and run the same loop."""
    import ray
    import ray.train
    import ray.train.torch
    import torch
    from ray.exceptions import RayError
    from ray.train.v2._internal.execution import context

    go_offline()  # a node started by hand has no cvops CLI to set them
    for name in ("ray.train", context.__file__):  # the report's logger is named by its file, outside ray.train
        logging.getLogger(name).setLevel(logging.WARNING)  # not a line per report and rank: cvops logs each epoch
    params: Params = config["params"]
    torch.set_num_threads(max(1, math.floor(params.distributed.cpus_per_worker)))
    try:
        splits: Splits = ray.get(config["splits"])
    except RayError as err:
        node = ray.get_runtime_context().get_node_id()[:12]
        raise DataError(
            f"a training worker on node {node} could not fetch the prepared data from Ray's object store "
            f"({str(err).splitlines()[0][:160]}): check that the node reaches the driver's node"
        ) from err
    inputs = training_inputs(params, config["ref"], splits)
    checkpoints = _ReportedCheckpoints(config["run_key"])
    train_model(
        inputs,
        params.train,
        seed=params.base.seed,
        device=ray.train.torch.get_device(),
        checkpoints=checkpoints,
        resume=ray.train.get_checkpoint() is not None,
        on_epoch=config["on_epoch"],
    )


def fit_on_ray(
    ref: DatasetRef,
    params: Params,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_epoch: MetricsCallback | None = None,
) -> TrainResult:
    """`fit` on Ray Train; returns the model with its best epoch's weights, as `train_model` does."""
    import ray

    distributed, checkpoints = params.distributed, run_checkpoints(ref, params, checkpoint_dir)
    per_worker = _resources_per_worker(distributed)
    with ExitStack() as stack:
        if checkpoints is None:  # nowhere asked for: the run's checkpoints only carry the model back
            checkpoints = _scratch_checkpoints(stack)
        storage = Path(distributed.storage) if distributed.storage else checkpoints.directory.parent
        run_dir = storage / checkpoints.directory.name
        _start_or_resume(run_dir, resume)
        stack.enter_context(ray_session(distributed, distributed.train_workers, per_worker, SIZED_BY))
        config = {
            "params": params,
            "ref": ref,
            "splits": ray.put(training_splits(ref)),
            "run_key": checkpoints.run_key,
            "on_epoch": on_epoch,
        }
        trainer = _trainer(config, distributed, per_worker, run_dir, storage)
        state = _last_state(trainer, run_dir, checkpoints.run_key, distributed.max_failures)
    return _trained_result(state, ref, params)


def _resources_per_worker(distributed: DistributedParams) -> dict[str, float]:
    """The Ray resources each training worker reserves: its CPUs, and its GPUs when it has any."""
    per_worker = {"CPU": distributed.cpus_per_worker}
    if distributed.gpus_per_worker:
        per_worker["GPU"] = distributed.gpus_per_worker
    return per_worker


def _scratch_checkpoints(stack: ExitStack) -> Checkpoints:
    """Checkpoints in a temporary folder, removed when `stack` closes."""
    scratch = Path(tempfile.mkdtemp(prefix="cvops-ray-train-"))
    stack.callback(shutil.rmtree, scratch, ignore_errors=True)
    return Checkpoints(scratch / "run", "unnamed")


def _start_or_resume(run_dir: Path, resume: bool) -> None:
    """Ray Train continues a run whose folder holds registered checkpoints: keep them for --resume, else start
    afresh."""
    if resume and not (run_dir / SNAPSHOT).is_file():
        raise ModelError(f"--resume: no checkpoint in {run_dir}; run without --resume to start afresh")
    if not resume and run_dir.exists():
        log.info("starting afresh: removing the earlier checkpoints in %s", run_dir)
        shutil.rmtree(run_dir)


def _trainer(
    config: dict[str, Any], distributed: DistributedParams, per_worker: dict[str, float], run_dir: Path, storage: Path
) -> "ray.train.torch.TorchTrainer":
    """Ray Train's trainer running `_train_worker` on `config` in the workers `distributed` asks for (gloo on
    CPUs, NCCL on GPUs), keeping the run's checkpoints in `run_dir` under `storage`."""
    from ray.train import FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    scaling = ScalingConfig(
        num_workers=distributed.train_workers,
        use_gpu=distributed.gpus_per_worker > 0,
        resources_per_worker=per_worker,
    )
    run = RunConfig(  # type: ignore[call-arg]  # Train V2's RunConfig: the stubs are V1's
        name=run_dir.name,
        storage_path=str(storage),
        logging_config=LoggingConfig("WARNING"),
        failure_config=FailureConfig(max_failures=distributed.max_failures),
    )
    backend = TorchConfig(backend="nccl" if distributed.gpus_per_worker > 0 else "gloo")
    return TorchTrainer(
        _train_worker, train_loop_config=config, scaling_config=scaling, run_config=run, torch_config=backend
    )


def _last_state(
    trainer: "ray.train.torch.TorchTrainer", run_dir: Path, run_key: str, max_failures: int
) -> dict[str, Any]:
    """Run `trainer` to its end and read the run's last checkpoint; a run Ray Train gave up on ends in one
    line (`_failure`)."""
    from ray.train import TrainingFailedError

    nodes = _alive_nodes()
    try:
        result = trainer.fit()
    except TrainingFailedError as err:
        raise _failure(err, nodes, max_failures) from err
    if result.checkpoint is None:
        raise ModelError(f"Ray Train finished without a checkpoint in {run_dir}; run again without --resume")
    return _read(result.checkpoint, run_key)


def _trained_result(state: dict[str, Any], ref: DatasetRef, params: Params) -> TrainResult:
    """The model with the best weights of a run's last checkpoint, and the run's history."""
    model = new_model(params, ref, pretrained=False)  # the weights come from the checkpoint
    model.load_state_dict(state["best"].weights)
    return TrainResult(
        model=model.eval(),
        history=state["history"],
        best_epoch=state["best"].epoch,
        stopped_early=len(state["history"]) < params.train.epochs,  # the only way a run ends before its last epoch
        world_size=state["world_size"],
        backend=state["backend"],
    )


def _alive_nodes() -> dict[str, str]:
    """The cluster's alive nodes: id -> address."""
    import ray

    return {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}


def _lost_since(nodes: dict[str, str]) -> dict[str, str]:
    """Those of `nodes` the cluster declares dead within NODE_DEATH_S (Ray's health checks take that long)."""
    deadline = time.monotonic() + NODE_DEATH_S
    while True:
        lost = {node: address for node, address in nodes.items() if node not in _alive_nodes()}
        if lost or time.monotonic() > deadline:
            return lost
        time.sleep(1.0)


def _failure(err: Exception, nodes: dict[str, str], max_failures: int) -> CvopsError:
    """One line for a run Ray Train gave up on: the workers' own error (a cvops error as it was raised), or the
    nodes (of `nodes`, alive when it started) the cluster lost, or else the first worker's error."""
    failures = list(getattr(err, "worker_failures", {}).values()) or [err]
    own = [failure for failure in failures if isinstance(failure, CvopsError)]
    if own:
        return type(own[0])(str(own[0]))
    attempts = f"after {max_failures + 1} attempts" if max_failures else "with distributed.max_failures 0"
    lost = _lost_since(nodes)  # a node's death reaches its peers (a reset connection) before Ray declares it
    if lost:
        where = ", ".join(f"node {node[:12]} at {address}" for node, address in lost.items())
        return ServiceUnavailable(
            f"training on Ray failed {attempts}: the cluster lost {where}; nothing was registered: add nodes or "
            "lower distributed.train_workers, then rerun with --resume"
        )
    cause = str(failures[0]).strip().splitlines()[-1][:200]
    return ModelError(f"training on Ray failed {attempts} ({cause}); nothing was registered")
