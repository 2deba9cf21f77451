"""The Kubernetes recipes without a cluster: every manifest is checked against the Kubernetes API schemas
(kubernetes-validate, strict: an unknown field fails). The training pipeline's pods and its CronJob are
rendered by ZenML's own manifest code from infra/kubernetes/training.yaml, as the Kubernetes orchestrator
would submit them."""

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cvops.config import PARAMS_FILE, load_params
from cvops.env import SERVE_OVERRIDES_ENV
from cvops.serving.kubernetes import SECRET, write_serving_manifests
from tests.conftest import REPO

K8S = "1.33.0"
KUBERNETES = REPO / "infra" / "kubernetes"


def valid(manifest: dict[str, Any]) -> dict[str, Any]:
    kubernetes_validate.validate(manifest, K8S, strict=True)
    return manifest


def test_serving_manifests_are_valid_and_wired_together(tmp_path: Path) -> None:
    folder = write_serving_manifests(tmp_path, "cvops-classifier", "7")
    documents = {d["kind"]: valid(d) for d in yaml.safe_load_all((folder / "serving.yaml").read_text())}
    assert set(documents) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    deployment = documents["Deployment"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "cvops-classifier:v7" and pod["metadata"]["labels"]["cvops.model-version"] == "7"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    secrets = {
        name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets["CVOPS_API_TOKEN"]["name"] == secrets["CVOPS_STATE_URL"]["name"] == SECRET  # never a value
    overrides = json.loads(env[SERVE_OVERRIDES_ENV]["value"])  # the pod's params: one worker, pods scale out
    assert load_params(REPO / PARAMS_FILE, overrides).serve.worker_count == 1
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert (
        documents["Service"]["spec"]["selector"]
        == selector
        == documents["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    )
    assert documents["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["serving.yaml"] and kustomization["images"][0]["newTag"] == "v7"


def test_the_scheduler_cronjob_runs_schedule_once_with_the_team_secret() -> None:
    cronjob = valid(yaml.safe_load((KUBERNETES / "scheduler-cronjob.yaml").read_text()))
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["schedule", "--once"] and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert container["envFrom"] == [{"secretRef": {"name": "cvops-team"}}]


def rendered_training() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each training step's pod and the scheduled run's CronJob, as ZenML's Kubernetes orchestrator builds them
    from the run configuration (its settings, pod settings and default resource requests)."""
    from kubernetes import client as k8s
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.integrations.kubernetes import kube_utils, manifest_utils
    from zenml.integrations.kubernetes.flavors import KubernetesOrchestratorSettings

    config = PipelineRunConfiguration.model_validate(yaml.safe_load((KUBERNETES / "training.yaml").read_text()))
    assert set(config.steps or {}) <= {path.stem for path in (REPO / "steps").glob("*.py")}  # real step names

    def settings_of(settings: dict[str, Any]) -> Any:
        found = settings["orchestrator.kubernetes"]
        return KubernetesOrchestratorSettings.model_validate(found if isinstance(found, dict) else found.model_dump())

    pipeline_level = settings_of(config.settings)

    def pod(name: str, settings: Any) -> dict[str, Any]:
        with_defaults = kube_utils.apply_default_resource_requests(memory="400Mi", cpu="100m", pod_settings=settings)
        manifest = manifest_utils.build_pod_manifest(
            pod_name=name,
            image_name="registry.example.com/cvops:abc",
            command=["python", "-m", "zenml.entrypoints.entrypoint"],
            args=["--step_name", name],
            privileged=False,
            pod_settings=with_defaults,
            labels={"step": name},
        )
        return k8s.ApiClient().sanitize_for_serialization(manifest)

    pods = {}
    for step in ("load_dataset", "train_model", "quantize_model"):
        step_config = (config.steps or {}).get(step)
        settings = settings_of(step_config.settings) if step_config else pipeline_level
        pods[step] = pod(step.replace("_", "-"), settings.pod_settings)
    orchestrator = manifest_utils.build_pod_manifest(
        pod_name=None,
        image_name="registry.example.com/cvops:abc",
        command=["python", "-m", "zenml"],
        args=[],
        privileged=False,
        pod_settings=pipeline_level.orchestrator_pod_settings,
    )
    job = manifest_utils.build_job_manifest("training", manifest_utils.pod_template_manifest_from_pod(orchestrator))
    cronjob = manifest_utils.build_cron_job_manifest(
        manifest_utils.job_template_manifest_from_job(job),
        "0 3 * * 0",
        concurrency_policy=pipeline_level.concurrency_policy,
        successful_jobs_history_limit=pipeline_level.successful_jobs_history_limit,
    )
    return pods, k8s.ApiClient().sanitize_for_serialization(cronjob)


@pytest.fixture(scope="module")
def training_manifests() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    return rendered_training()


def test_the_train_step_asks_for_a_gpu_and_the_others_do_not(training_manifests) -> None:
    pods, _ = training_manifests
    for name, manifest in pods.items():
        valid(manifest)
        (container,) = manifest["spec"]["containers"]
        limits = container["resources"].get("limits", {})
        assert ("nvidia.com/gpu" in limits) == (name == "train_model"), name
    train = pods["train_model"]["spec"]
    assert train["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert train["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pods["load_dataset"]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}


def test_the_schedule_becomes_a_cronjob_that_never_overlaps(training_manifests) -> None:
    _, cronjob = training_manifests
    valid(cronjob)
    assert cronjob["kind"] == "CronJob" and cronjob["spec"]["schedule"] == "0 3 * * 0"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
