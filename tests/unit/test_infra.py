"""infra/compose.yaml cannot run here (no Docker engine). What can be checked: it parses, and it agrees with
the stack `make team-up` starts: the same client variables, and ports and credentials that match."""

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from cvops.stack.team import (
    AUTH_CACHE_TTL_S,
    ROLES,
    SERVERS,
    Service,
    TeamConfig,
    TeamStack,
    TeamStackError,
    _mysql,
    _postgres,
    free_port,
)
from tests.conftest import REPO

INFRA = REPO / "infra"


def compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def variables(value: object) -> set[str]:
    """The ${NAME} variables a compose value refers to."""
    return set(re.findall(r"\$\{(\w+)", str(value)))


def published(service: dict) -> set[int]:
    return {int(str(port).split(":")[-2]) for port in service.get("ports", [])}


def test_clients_of_the_compose_stack_set_the_variables_team_up_writes(tmp_path: Path) -> None:
    running = {name: Service(name=name, pid=0, port=1, log="") for name in SERVERS}
    written = TeamStack(tmp_path).client_env(TeamConfig.new("cvops-classifier"), running)
    assert set(compose()["x-cvops-client-env"]) == set(written)


def test_ports_and_credentials_agree_between_services_and_clients() -> None:
    stack = compose()
    client, services = stack["x-cvops-client-env"], stack["services"]
    for variable, service in [
        ("MLFLOW_TRACKING_URI", "mlflow"),
        ("ZENML_STORE_URL", "zenml"),
        ("AWS_ENDPOINT_URL", "minio"),
        ("CVOPS_STATE_URL", "postgres"),
    ]:
        assert urlsplit(client[variable]).port in published(services[service]), variable
    minio, mlflow = services["minio"]["environment"], services["mlflow"]["environment"]
    assert variables(client["AWS_ACCESS_KEY_ID"]) == variables(minio["MINIO_ROOT_USER"]) == {"CVOPS_S3_KEY"}
    assert variables(client["AWS_SECRET_ACCESS_KEY"]) == variables(minio["MINIO_ROOT_PASSWORD"])
    assert variables(mlflow["AWS_SECRET_ACCESS_KEY"]) == variables(minio["MINIO_ROOT_PASSWORD"])
    database = variables(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    assert database <= variables(client["CVOPS_STATE_URL"]) and database <= variables(services["mlflow"]["command"])
    assert database <= variables(mlflow["MLFLOW_AUTH_DATABASE_URI"])
    zenml_db = variables(services["mysql"]["environment"]["MARIADB_PASSWORD"])
    assert zenml_db <= variables(services["zenml"]["environment"]["ZENML_STORE_URL"])
    # the trainer signs in with the password `cvops team users` gives the trainer (the name .team/users.env uses)
    assert client["MLFLOW_TRACKING_USERNAME"] == ROLES["trainer"][0]
    assert variables(client["MLFLOW_TRACKING_PASSWORD"]) == {"CVOPS_TRAINER_PASSWORD"}


def test_every_secret_the_compose_stack_needs_is_in_the_example_env_file() -> None:
    example = {
        line.split("=")[0]
        for line in (INFRA / "team.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    used = variables((INFRA / "compose.yaml").read_text()) | {f"CVOPS_{role.upper()}_PASSWORD" for role in ROLES}
    assert used == example
    created = set(re.findall(r"CREATE DATABASE (\w+)", (INFRA / "postgres-init.sql").read_text()))
    named = {urlsplit(url).path.strip("/") for url in re.findall(r"postgresql://[^\s'\",]+", str(compose()))}
    assert named <= created | {compose()["services"]["postgres"]["environment"]["POSTGRES_DB"]}


def test_a_database_that_does_not_answer_is_one_line_without_its_password() -> None:
    nobody = free_port()
    for connect, url in (
        (_mysql, f"mysql://cvops:s3cret-pw@127.0.0.1:{nobody}/x"),
        (_postgres, f"postgresql://cvops:s3cret-pw@127.0.0.1:{nobody}/x"),
    ):
        with pytest.raises(TeamStackError) as failed:
            connect(url, ["SELECT 1"])
        message = str(failed.value)
        assert "s3cret-pw" not in message and ":***@" in message and "\n" not in message


def test_the_compose_servers_are_configured_like_team_ups() -> None:
    """The MLflow container caches credentials as long as team-up's server (else every request pays for the
    password hash); the ZenML server knows the address it is published on (else its dashboard's login cookie
    is Secure-only, and a browser on plain http never sends it back)."""
    assert f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n" in (INFRA / "mlflow" / "entrypoint.sh").read_text()
    zenml = compose()["services"]["zenml"]
    assert urlsplit(zenml["environment"]["ZENML_SERVER_SERVER_URL"]).port in published(zenml)
