#!/usr/bin/env bash
# The ZenML stack that runs cvops's pipelines on Kubernetes: the Kubernetes orchestrator, the team's S3
# artifact store and MLflow tracker + registry (from `cvops init --stack team`), a container registry and
# an in-cluster image builder. Run once, against the team's ZenML server (`. .team/env` or your servers).
#
#   KUBE_CONTEXT=my-cluster REGISTRY=registry.example.com/cvops infra/kubernetes/stack.sh
#   cvops run training --config infra/kubernetes/training.yaml
set -euo pipefail
: "${KUBE_CONTEXT:?the kubectl context of the cluster}" "${REGISTRY:?the container registry, e.g. registry.example.com/cvops}"
NAMESPACE=${NAMESPACE:-cvops}

zenml integration install kubernetes s3 mlflow -y
zenml orchestrator register cvops-k8s --flavor kubernetes \
  --kubernetes_context="$KUBE_CONTEXT" --kubernetes_namespace="$NAMESPACE"
zenml container-registry register cvops-registry --flavor default --uri="$REGISTRY"
zenml image-builder register cvops-kaniko --flavor kaniko \
  --kubernetes_context="$KUBE_CONTEXT" --kubernetes_namespace="$NAMESPACE"
# cvops-s3, cvops-mlflow-team and cvops-mlflow-registry exist once `cvops init --stack team` has run
zenml stack register cvops-k8s -o cvops-k8s -a cvops-s3 -e cvops-mlflow-team -r cvops-mlflow-registry \
  -c cvops-registry -i cvops-kaniko --set
# The pods read the team's client variables from this Secret (never from the image or params.yaml):
echo "next: sed -n 's/^export //p' .team/env > team.env && kubectl -n $NAMESPACE create secret generic cvops-team --from-env-file=team.env"
