"""Run the `cvops` command as a user would: its own process, in a checkout, with a clean environment."""

import os
import subprocess
import sys
from pathlib import Path

# What a test process may have picked up from the checkouts and stacks of other tests (an in-process MLflow
# client exports MLFLOW_TRACKING_URI; a team test signs in; xdist runs several modules in one worker): none of it
# may reach a command. cvops sets its offline switches again in every process (go_offline).
STATE_PREFIXES = ("CVOPS_", "MLFLOW_", "ZENML_", "BENTOML_", "AWS_", "DVC_", "RAY_")


def clean_env() -> dict[str, str]:
    """This process's environment without anything that could point cvops at another checkout's state."""
    return {k: v for k, v in os.environ.items() if not k.startswith(STATE_PREFIXES)}


def cvops(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`cvops ARGS` in `cwd`, with `env` on top of the clean environment; whatever it printed, no traceback
    (an error is one line, its traceback in a file)."""
    result = subprocess.run(
        [sys.executable, "-m", "cvops.cli", *args],
        cwd=cwd,
        env=clean_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Traceback" not in result.stdout + result.stderr, f"cvops {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0]
