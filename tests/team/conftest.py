"""The team stack, started by the same code as `make team-up` (real PostgreSQL, MariaDB, S3 server, MLflow
and ZenML servers), and one checkout that trained the digits model on it. Both are shared by the session;
the stack's databases are dropped at the end. When PostgreSQL or MariaDB can neither be reached nor
started, the stack's one-line error fails every test here: nothing is skipped."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from mlflow.tracking import MlflowClient

from cvops.stack.team import BUCKET, ROLES, TeamConfig, TeamStack
from tests.checkouts import new_checkout
from tests.cli import cvops
from tests.conftest import SMALL_RUN

MODEL = "cvops-classifier"


@dataclass
class Team:
    stack: TeamStack
    env: dict[str, str]  # what `. .team/env` exports: the trainer's credentials
    config: TeamConfig
    root: Path  # the checkout whose .team/ holds the stack, as the README's team flow has it

    def as_user(self, role: str) -> dict[str, str]:
        """The environment of someone who set MLFLOW_TRACKING_USERNAME/_PASSWORD to `role`'s account."""
        user, _ = ROLES[role]
        return self.env | {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": self.config.passwords[role]}

    def as_admin(self) -> dict[str, str]:
        return self.env | {
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": self.config.mlflow_admin_password,
        }

    def s3(self) -> Any:
        """A boto3 S3 client of the stack's S3 server, with the trainer's keys."""
        return boto3.client(
            "s3",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
        )

    def s3_keys(self) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="session")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """The stack `make team-up` starts in a checkout's .team/ (the README's order: the servers run from inside the
    checkout that then runs `cvops init --stack team` and trains)."""
    root = new_checkout(tmp_path_factory.mktemp("member") / "checkout")
    stack = TeamStack(root / ".team")
    try:
        env = stack.up(MODEL, say=print)
        yield Team(stack, env, stack.config(), root)
    finally:
        stack.down(say=print, drop=True)


@pytest.fixture(scope="session")
def trained_on_team(team: Team) -> tuple[Path, str]:
    """The stack's checkout, initialised on it, that trained the small digits run: (checkout, its output)."""
    root = team.root
    init = cvops(root, "init", "--stack", "team", env=team.env)
    assert init.returncode == 0, init.stderr[-3000:]
    trained = cvops(root, "run", "training", "--overlay", str(SMALL_RUN), env=team.env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return root, init.stdout + init.stderr + trained.stdout + trained.stderr


def mlflow_client(team: Team, monkeypatch: pytest.MonkeyPatch, role: str) -> MlflowClient:
    """An MLflow client of this process signed in as `role` (or "admin")."""
    env = team.as_admin() if role == "admin" else team.as_user(role)
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, env[key])
    return MlflowClient(tracking_uri=team.env["MLFLOW_TRACKING_URI"], registry_uri=team.env["MLFLOW_TRACKING_URI"])
