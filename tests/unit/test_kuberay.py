"""The KubeRay recipe without a cluster: the RayCluster's pods are checked against the Kubernetes API schemas,
its Ray is the pinned one, and the overlay and run configuration that send batch inference to it name its
service, port and secret exactly as KubeRay and the cluster's pods do."""

from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import yaml

from cvops.config import load_params
from tests.conftest import REPO
from tests.unit.test_kubernetes import valid

RAY_DIR = REPO / "infra" / "kubernetes" / "ray"


def cluster() -> dict[str, Any]:
    return yaml.safe_load((RAY_DIR / "raycluster.yaml").read_text())


def groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = manifest["spec"]
    return {"head": spec["headGroupSpec"], **{group["groupName"]: group for group in spec["workerGroupSpecs"]}}


def container(group: dict[str, Any]) -> dict[str, Any]:
    (found,) = group["template"]["spec"]["containers"]
    return found


def test_every_pod_is_valid_and_runs_the_pinned_ray_on_the_cvops_image() -> None:
    manifest = cluster()
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayCluster")
    assert manifest["spec"]["rayVersion"] == version("ray")
    assert f"ray=={version('ray')}" in (REPO / "requirements.lock").read_text().splitlines()
    images = set()
    for name, group in groups(manifest).items():
        valid({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": group["template"]["spec"]})
        images.add(container(group)["image"])
        env = {e["name"]: e for e in container(group)["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "cvops-ray", "key": "RAY_AUTH_TOKEN"}
        requests, limits = container(group)["resources"]["requests"], container(group)["resources"]["limits"]
        assert requests["cpu"] == limits["cpu"] and requests["memory"] == limits["memory"]  # Ray counts what it gets
    assert len(images) == 1 and next(iter(images)).endswith("/cvops:latest")


def test_the_head_schedules_no_work_and_only_the_gpu_group_asks_for_gpus() -> None:
    found = groups(cluster())
    assert set(found) == {"head", "cpu", "gpu"}
    assert found["head"]["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in container(found["cpu"])["resources"]["limits"]
    assert container(found["gpu"])["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in found["gpu"]["template"]["spec"][
        "tolerations"
    ]
    for name in ("cpu", "gpu"):
        group = found[name]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_the_overlay_reaches_the_heads_client_port_through_kuberays_service() -> None:
    manifest = cluster()
    params = load_params(REPO / "params.yaml", overlay=RAY_DIR / "distributed.yaml")
    address = urlsplit(params.distributed.address or "")
    assert params.distributed.engine == "ray" and address.scheme == "ray"
    assert address.hostname == f"{manifest['metadata']['name']}-head-svc"
    ports = {p["name"]: p["containerPort"] for p in container(groups(manifest)["head"])["ports"]}
    assert address.port == ports["client"]
    # the scoring actors and the training workers fit on the CPU group at its smallest (the autoscaler's floor),
    # or cvops refuses the run
    cpu = groups(manifest)["cpu"]
    cpus = int(container(cpu)["resources"]["limits"]["cpu"]) * cpu["minReplicas"]
    for workers in (params.distributed.batch_workers, params.distributed.train_workers):
        assert workers * params.distributed.cpus_per_worker <= cpus


def test_training_workers_write_checkpoints_on_the_shared_claim_and_log_to_the_team_mlflow() -> None:
    params = load_params(REPO / "params.yaml", overlay=RAY_DIR / "distributed.yaml")
    assert params.distributed.storage is not None and params.distributed.max_failures >= 1
    for group in groups(cluster()).values():
        paths = [mount["mountPath"] for mount in container(group)["volumeMounts"]]
        assert any(params.distributed.storage.startswith(f"{path}/") for path in paths)
        assert {"secretRef": {"name": "cvops-team"}} in container(group)["envFrom"]


def mounts(pod_spec: dict[str, Any], mounted: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(claim, path) for each persistent volume claim the pod mounts."""
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"]}
    return {(claims[m["name"]], m["mountPath"]) for m in mounted}


def test_the_batch_inference_step_gets_the_clusters_token_and_the_team_secret() -> None:
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.integrations.kubernetes.flavors import KubernetesOrchestratorSettings

    config = PipelineRunConfiguration.model_validate(yaml.safe_load((RAY_DIR / "driver.yaml").read_text()))
    settings = KubernetesOrchestratorSettings.model_validate(config.settings["orchestrator.kubernetes"])
    pod = settings.pod_settings
    assert pod is not None
    secrets = {source["secretRef"]["name"] for source in pod.env_from}
    assert secrets == {"cvops-team", "cvops-ray"}
    assert {"name": "RAY_AUTH_MODE", "value": "token"} in pod.env
    # the step (the driver, which lists the input) and every Ray pod (which read it) see the same files
    step = mounts({"volumes": pod.volumes}, pod.volume_mounts)
    assert step
    for group in groups(cluster()).values():
        assert mounts(group["template"]["spec"], container(group)["volumeMounts"]) == step
