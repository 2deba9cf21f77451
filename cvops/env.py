"""The environment variables cvops reads, by name, and the offline switches it sets for every library it uses."""

import os

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
