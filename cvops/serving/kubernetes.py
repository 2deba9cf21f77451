"""Kubernetes manifests that serve a bento's image: a Deployment probed on /readyz and /livez, a Service, a
HorizontalPodAutoscaler and a PodDisruptionBudget, written by `cvops package` beside the bento as a kustomize
folder (`kubectl apply -k bentos/kubernetes/<bento>-v<V>`; an overlay sets the image registry).

Secrets stay in the cluster: the Deployment reads the API token and the state database's URL (where every
replica writes the inference log) from the Secret `cvops-serving`, which the manifests name but never hold.
"""

import json
from pathlib import Path
from typing import Any

import yaml

from cvops.config import SERVE_PORT
from cvops.env import API_TOKEN_ENV, REPLICA_ENV, SERVE_OVERRIDES_ENV, STATE_ENV

SECRET = "cvops-serving"  # keys: api-token, state-url
MIN_REPLICAS, MAX_REPLICAS, CPU_TARGET_PERCENT = 2, 10, 70


def _probe(path: str, delay: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": delay,
        "periodSeconds": 10,
        "failureThreshold": 3,
    }


def _secret(name: str, key: str, optional: bool = False) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key, "optional": optional}}}


def serving_manifests(name: str, version: str, image: str) -> list[dict[str, Any]]:
    """The objects that serve `image` (the bento of registered version `version`) as `name`."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "cvops"}
    container = {
        "name": "service",
        "image": image,
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "env": [
            _secret(API_TOKEN_ENV, "api-token"),
            _secret(STATE_ENV, "state-url", optional=True),  # without it, the log stays in the pod
            {"name": REPLICA_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            # one worker a pod: the autoscaler adds pods (serve.workers auto would count the node's cores)
            {"name": SERVE_OVERRIDES_ENV, "value": json.dumps(["serve.workers=1"])},
        ],
        "readinessProbe": _probe("/readyz", 5),
        "livenessProbe": _probe("/livez", 15),
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    }
    metadata = {"name": name, "labels": labels | {"cvops.model-version": version}}
    pod = {"metadata": {"labels": metadata["labels"]}, "spec": {"containers": [container]}}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {"replicas": MIN_REPLICAS, "selector": {"matchLabels": labels}, "template": pod},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": MIN_REPLICAS,
                "maxReplicas": MAX_REPLICAS,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata,
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}},
        },
    ]


def write_serving_manifests(directory: Path, name: str, version: str) -> Path:
    """`serving.yaml` and its `kustomization.yaml` in `directory/<name>-v<version>/`, for the image that
    `bentoml containerize <bento> -t <name>:v<version>` builds; returns the folder."""
    folder = directory / f"{name}-v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    documents = serving_manifests(name, version, f"{name}:v{version}")
    (folder / "serving.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["serving.yaml"],
        "images": [{"name": name, "newTag": f"v{version}"}],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return folder
