"""The team stack, started by the team guide's commands (real PostgreSQL, MariaDB, S3 server, MLflow and ZenML
servers), and one checkout that trained the digits model on it. Both are shared by the session;
the stack's databases are dropped at the end. When PostgreSQL or MariaDB can neither be reached nor
started, the stack's one-line error fails every test here: nothing is skipped."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from mlflow.tracking import MlflowClient

from cvops.stack.team import BUCKET, ROLES, TeamConfig, TeamStack, read_env
from tests.checkouts import new_checkout
from tests.docs import DOCS, Shell, docs_env

MODEL = "cvops-classifier"


@dataclass
class Team:
    stack: TeamStack
    env: dict[str, str]  # what `. .team/env` exports: the trainer's credentials
    config: TeamConfig
    root: Path  # the checkout whose .team/ holds the stack, as the team guide has it
    guide: Shell  # the session that runs the team guide's commands
    output: str  # what they printed up to the training

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


TEAM_GUIDE = DOCS / "how-to" / "team-stack.md"
TRAINING, PROMOTION = "cvops run training", "cvops models promote"  # the guide's blocks that end its parts


@pytest.fixture(scope="session")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """The docs' team guide (docs/how-to/team-stack.md) run as written, in one shell, in a new checkout: up to
    its training (`cvops team up`, `. .team/env`, `cvops init --stack team`, `cvops run training`) before the
    team tests; its reviewer's promotion by the test of four eyes; the rest (status, `cvops team down --drop`)
    at the end. The stack's databases are dropped whatever happens."""
    folder = tmp_path_factory.mktemp("member")
    root = new_checkout(folder / "checkout")
    guide = Shell(root, docs_env(folder / "home"), folder / "shell")
    stack = TeamStack(root / ".team")
    try:
        trained = guide.run_page(TEAM_GUIDE, until=TRAINING)
        output = "".join(printed for _, printed in trained)
        yield Team(stack, read_env(stack.env_file), stack.config(), root, guide, output)
        guide.run_page(TEAM_GUIDE, after=PROMOTION)
    finally:
        guide.close()
        if stack.dir.exists():
            stack.down(say=print, drop=True)


@pytest.fixture(scope="session")
def trained_on_team(team: Team) -> tuple[Path, str]:
    """The stack's checkout, initialised on it, that trained the small digits run: (checkout, what the guide's
    commands printed up to the training)."""
    return team.root, team.output


def mlflow_client(team: Team, monkeypatch: pytest.MonkeyPatch, role: str) -> MlflowClient:
    """An MLflow client of this process signed in as `role` (or "admin")."""
    env = team.as_admin() if role == "admin" else team.as_user(role)
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, env[key])
    return MlflowClient(tracking_uri=team.env["MLFLOW_TRACKING_URI"], registry_uri=team.env["MLFLOW_TRACKING_URI"])
