"""The environment variables cvops reads, by name, and the offline switches it sets for every library it uses."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

# cvops's own
ROOT_ENV = "CVOPS_ROOT"  # the checkout (Project.find); set for the service, DVC's stages and `models reproduce`
STATE_ENV = "CVOPS_STATE_URL"  # the team's state database (inference log, locks); else params.yaml state.url
S3_URL_ENV = "CVOPS_S3_URL"  # the team stack's bucket (`.team/env`): DVC data, ZenML artifacts, captures
SERVE_OVERRIDES_ENV = "CVOPS_SERVE_OVERRIDES"  # `cvops serve`'s options, as a JSON list of key=value, to its service
SERVE_MODEL_ENV = "CVOPS_SERVE_MODEL"  # the alias or version `cvops serve` chose, to its service
BENTO_MODEL_ENV = "CVOPS_BENTO_MODEL"  # a bento's model in BentoML's store: served instead of the registry's
API_TOKEN_ENV = "CVOPS_API_TOKEN"  # the service's bearer token; `cvops traffic` sends it
REPLICA_ENV = "CVOPS_REPLICA"  # names this process's inference-log rows (a pod name on Kubernetes); default host-pid
WEBHOOK_ENV = "CVOPS_ALERT_WEBHOOK"  # drift alerts go there too; wins over params.yaml
POSTGRES_ENV = "CVOPS_TEAM_POSTGRES_URL"  # the team stack's PostgreSQL server
MYSQL_ENV = "CVOPS_TEAM_MYSQL_URL"  # the team stack's MariaDB/MySQL server (ZenML's store)
STREAM_PASSWORD_ENV = (
    "CVOPS_STREAM_PASSWORD"  # `cvops run video`: the password of a live source's user (rtsp://user@cam)
)
OVERLAY_ENV = "CVOPS_OVERLAY"  # an overlay every `cvops run training` applies when it names none (smoke runs, CI)
ONNX2TF_ENV = "CVOPS_ONNX2TF"  # the litert target's converter, in an environment of its own; else onnx2tf on PATH
LABEL_STUDIO_URL_ENV = "LABEL_STUDIO_URL"  # the Label Studio server of `cvops labels studio/pull` (default :8080)
LABEL_STUDIO_KEY_ENV = "LABEL_STUDIO_API_KEY"  # its personal access token (or a legacy token)
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"  # Label Studio serves local files under it (default: /)


def role_env(role: str, field: str) -> str:
    """CVOPS_TRAINER_USER, CVOPS_REVIEWER_PASSWORD, ...: a team role's MLflow USER or PASSWORD (`.team/users.env`)."""
    return f"CVOPS_{role.upper()}_{field}"


# the libraries' that cvops reads, or sets for the processes it starts
MLFLOW_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # a tracking server; else the checkout's SQLite store
MLFLOW_TRACKING_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"  # a tracking server's basic-auth user
MLFLOW_TRACKING_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"  # ... and that user's password
MLFLOW_S3_ENDPOINT_URL_ENV = "MLFLOW_S3_ENDPOINT_URL"  # an S3 server that is not AWS, for MLflow's artifacts
ZENML_CONFIG_PATH_ENV = "ZENML_CONFIG_PATH"  # ZenML's global config; the checkout's .zen/global unless set
ZENML_STORE_URL_ENV = "ZENML_STORE_URL"  # a ZenML server (the team's dashboard)
ZENML_STORE_API_KEY_ENV = "ZENML_STORE_API_KEY"  # how the team's clients sign in to it
BENTOML_HOME_ENV = "BENTOML_HOME"  # BentoML's store; the checkout's bentos/ unless set
AWS_ACCESS_KEY_ID_ENV = "AWS_ACCESS_KEY_ID"  # S3 credentials, as boto3, s3fs, DVC and MLflow read them
AWS_SECRET_ACCESS_KEY_ENV = "AWS_SECRET_ACCESS_KEY"  # ... and the secret of that key
AWS_ENDPOINT_URL_ENV = "AWS_ENDPOINT_URL"  # an S3 server that is not AWS
AWS_DEFAULT_REGION_ENV = "AWS_DEFAULT_REGION"  # the S3 region (us-east-1 for a local S3 server)
PATH_ENV = "PATH"  # DVC's stages find this interpreter's `cvops` first
PYTHONPATH_ENV = "PYTHONPATH"  # `models reproduce` runs the version's code from its worktree

# Offline-first: no analytics, no version checks, no hub downloads. Users may override any of them.
OFFLINE_ENV = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "DVC_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    # A tracking server that went away (a restart) is retried for about a minute, not MLflow's four
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
}


def go_offline() -> None:
    """Set the offline switches of every library cvops uses (OFFLINE_ENV), unless already set: for the CLI,
    and for anything else that imports cvops first (the tests, the benchmarks)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment while the block runs, each variable as it was afterwards."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
