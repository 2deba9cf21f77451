"""When no PostgreSQL or MariaDB answers where the team stack looks, `cvops team up` starts throwaway ones
from the machine's binaries, says so, and stops them with the stack."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pymysql
import pytest

from cvops.stack.team import TeamConfig, TeamStack, _stop_all, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def checkout_dir() -> Iterator[Path]:
    """A folder the postgres user can reach, as a checkout is (pytest's own temporary folders are private)."""
    folder = Path(tempfile.mkdtemp(prefix="cvops-throwaway-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_missing_database_server_is_started_from_local_binaries(checkout_dir: Path, kind: str) -> None:
    nobody = free_port()  # nothing listens there
    config = TeamConfig.new("cvops-classifier").model_copy(
        update={
            "postgres_url": f"postgresql://postgres@127.0.0.1:{nobody}",
            "mysql_url": f"mysql://root@127.0.0.1:{nobody}",
        }
    )
    said: list[str] = []
    server = TeamStack(checkout_dir / ".team")._database_server(config, kind, said.append)
    assert server is not None
    try:
        assert f"no {kind} server answered" in said[0] and "throwaway" in said[0]
        if kind == "postgres":
            with psycopg2.connect(f"{config.postgres_url}/postgres", connect_timeout=10) as connection:
                assert connection.server_version >= 150000
        else:
            connection = pymysql.connect(host="127.0.0.1", port=server.port, user="root", connect_timeout=10)
            connection.close()
        assert kind in config.throwaway  # remembered, so the next `up` starts it again with the same data
    finally:
        _stop_all([server])
