"""A complete team stack on one machine, without Docker (`make team-up`, `cvops team up|down|status`).

It uses the PostgreSQL and MariaDB servers found on 127.0.0.1 (or starts throwaway ones from the local
binaries when none answers, and says so), creates this stack's databases there, and starts as processes: an
S3-compatible server (moto), the MLflow server (PostgreSQL backend, artifacts proxied to S3, basic-auth users
with permissions) and the ZenML server (MariaDB). Clients need only `.team/env`; `.team/users.env` holds the
three MLflow users' credentials. Everything the stack keeps lives under `.team/` (mode 0600) and in its
databases: `down` stops the processes and keeps both, `down --drop` deletes both.
"""

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cvops.env import (
    AWS_ACCESS_KEY_ID_ENV,
    AWS_DEFAULT_REGION_ENV,
    AWS_ENDPOINT_URL_ENV,
    AWS_SECRET_ACCESS_KEY_ENV,
    MLFLOW_S3_ENDPOINT_URL_ENV,
    MLFLOW_TRACKING_PASSWORD_ENV,
    MLFLOW_TRACKING_URI_ENV,
    MLFLOW_TRACKING_USERNAME_ENV,
    MYSQL_ENV,
    POSTGRES_ENV,
    S3_URL_ENV,
    STATE_ENV,
    ZENML_CONFIG_PATH_ENV,
    ZENML_STORE_API_KEY_ENV,
    ZENML_STORE_URL_ENV,
    role_env,
)
from cvops.errors import ServiceUnavailable
from cvops.stack.web import http_json

BUCKET = "cvops"
DEFAULT_POSTGRES, DEFAULT_MYSQL = "postgresql://postgres@127.0.0.1:5432", "mysql://root@127.0.0.1:3306"
# role -> (MLflow user, permission on the registered model). The trainer creates runs and versions and moves
# `challenger` (EDIT); the reviewer manages the model (MANAGE: promote, reject, roll back); the viewer reads.
ROLES = {"trainer": ("trainer", "EDIT"), "reviewer": ("reviewer", "MANAGE"), "viewer": ("viewer", "READ")}
ZENML_SERVICE_ACCOUNT = "cvops-pipelines"
SERVERS = ("s3", "mlflow", "zenml")  # the processes of the stack, in start order
PG_BIN = Path("/usr/lib/postgresql/15/bin")
READY_SECONDS = 180
# MLflow checks a basic-auth password with a slow salted hash (~0.4 s on 2 cores) on every request unless
# its credential cache is on; a password change reaches the other worker within this many seconds.
AUTH_CACHE_TTL_S = 60


class TeamStackError(ServiceUnavailable):
    """The team stack cannot start or be reached (exit 10, as any server that does not answer)."""


class TeamConfig(BaseModel):
    """What the stack needs to come back with the same state after `down`: names and generated secrets."""

    suffix: str
    model_name: str
    postgres_url: str
    mysql_url: str
    s3_key: str
    s3_secret: str
    mlflow_admin_password: str
    flask_secret: str
    passwords: dict[str, str]
    zenml_admin_password: str
    zenml_jwt_secret: str
    zenml_db_password: str
    zenml_api_key: str | None = None
    throwaway: list[str] = []  # database servers this stack started itself (postgres, mariadb)

    @classmethod
    def new(cls, model_name: str) -> "TeamConfig":
        token = secrets.token_urlsafe
        return cls(
            suffix=secrets.token_hex(4),
            model_name=model_name,
            postgres_url=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES),
            mysql_url=os.environ.get(MYSQL_ENV, DEFAULT_MYSQL),
            s3_key=f"CVOPS{secrets.token_hex(6).upper()}",
            s3_secret=token(24),
            mlflow_admin_password=token(18),
            flask_secret=token(32),
            passwords={role: token(18) for role in ROLES},
            zenml_admin_password=token(18),
            zenml_jwt_secret=token(32),
            zenml_db_password=token(18),
        )

    def database(self, part: str) -> str:
        return f"cvops_{part}_{self.suffix}"

    def postgres(self, part: str) -> str:
        """The URL of this stack's PostgreSQL database `part` (mlflow, auth, state)."""
        return f"{self.postgres_url}/{self.database(part)}"

    @property
    def zenml_store(self) -> str:
        url = urllib.parse.urlsplit(self.mysql_url)
        user = self.database("zenml")
        return f"mysql://{user}:{self.zenml_db_password}@{url.hostname}:{url.port or 3306}/{user}"

    def secrets(self) -> list[str]:
        """Every secret value of the stack, for checks that none of them leaked."""
        values = [
            self.s3_secret,
            self.mlflow_admin_password,
            self.flask_secret,
            self.zenml_admin_password,
            self.zenml_jwt_secret,
            self.zenml_db_password,
            *self.passwords.values(),
        ]
        return values + ([self.zenml_api_key] if self.zenml_api_key else [])


class Service(BaseModel):
    name: str
    pid: int
    port: int
    log: str


class ServiceState(BaseModel):
    name: str
    running: bool
    url: str
    log: str


class TeamStatus(BaseModel):
    """`cvops team status`: the stack's processes (its state in `directory`), each running or stopped."""

    directory: str
    services: list[ServiceState]


class TeamStack:
    """The stack whose state lives in `directory` (`.team/` of a checkout)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.config_file = self.dir / "stack.json"
        self.services_file = self.dir / "services.json"
        self.env_file = self.dir / "env"
        self.users_file = self.dir / "users.env"

    # ----- state files -----
    def config(self, model_name: str | None = None) -> TeamConfig:
        if self.config_file.is_file():
            return TeamConfig.model_validate_json(self.config_file.read_text())
        if model_name is None:
            raise TeamStackError(f"no team stack in {self.dir}: run `cvops team up`")
        return TeamConfig.new(model_name)

    def _write(self, path: Path, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(".partial")
        partial.write_text(text)
        partial.chmod(0o600)
        os.replace(partial, path)

    def services(self) -> dict[str, Service]:
        if not self.services_file.is_file():
            return {}
        return {k: Service.model_validate(v) for k, v in json.loads(self.services_file.read_text()).items()}

    def running(self) -> dict[str, Service]:
        return {name: s for name, s in self.services().items() if _alive(s.pid)}

    def status(self) -> TeamStatus:
        running = self.running()
        states = [
            ServiceState(name=name, running=name in running, url=f"http://127.0.0.1:{service.port}", log=service.log)
            for name, service in self.services().items()
        ]
        return TeamStatus(directory=str(self.dir), services=states)

    # ----- up / down -----
    def up(self, model_name: str, say: Callable[[str], None]) -> dict[str, str]:
        """Start what is not running and return the client environment (also written to `.team/env`)."""
        config = self.config(model_name)
        self._write(self.config_file, config.model_dump_json(indent=2))
        known = self.services()
        services = {name: service for name, service in known.items() if _alive(service.pid)}
        if set(SERVERS) <= services.keys():
            say(f"the team stack in {self.dir} is already up")
            return self.client_env(config, services)
        started: list[Service] = []
        try:
            services = self._start(config, known, services, started, say)
        except BaseException:
            _stop_all(started)  # nothing half-started stays behind; what was running before keeps running
            raise
        env = self.client_env(config, services)
        self._write(self.env_file, _env_text(env, "cvops team stack: `. .team/env`, then `cvops init --stack team`"))
        users = {
            role_env(role, field): value
            for role, (user, _) in ROLES.items()
            for field, value in (("USER", user), ("PASSWORD", config.passwords[role]))
        }
        self._write(
            self.users_file, _env_text(users, "MLflow users: act as one by setting MLFLOW_TRACKING_USERNAME/_PASSWORD")
        )
        return env

    def _start(
        self,
        config: TeamConfig,
        known: dict[str, Service],
        running: dict[str, Service],
        started: list[Service],
        say: Callable[[str], None],
    ) -> dict[str, Service]:
        """Start what is not running: a restarted server takes its old port when it is free, so `.team/env`
        stays right for the clients that read it before."""
        services = dict(running)
        for kind in ("postgres", "mariadb"):
            if kind not in services and (database := self._database_server(config, kind, say)):
                services[kind] = database
                started.append(database)
        self._write(self.config_file, config.model_dump_json(indent=2))
        _create_postgres_databases(config)
        _create_zenml_database(config)
        for name, start in (("s3", self._start_s3), ("mlflow", self._start_mlflow), ("zenml", self._start_zenml)):
            if name in services:
                continue
            previous = known.get(name)
            port = previous.port if previous and not _answers(f"tcp://127.0.0.1:{previous.port}") else free_port()
            services[name] = start(config, services, port)
            started.append(services[name])
            self._save_services(known | services)
            say(f"{name}: http://127.0.0.1:{port} (log {services[name].log})")
        _make_bucket(config, services["s3"].port)
        admin = ("admin", config.mlflow_admin_password)
        create_mlflow_users(f"http://127.0.0.1:{services['mlflow'].port}", admin, config.passwords, config.model_name)
        if config.zenml_api_key is None:
            config.zenml_api_key = _zenml_api_key(config, services["zenml"].port)
            self._write(self.config_file, config.model_dump_json(indent=2))
        return services

    def _save_services(self, services: dict[str, Service]) -> None:
        self._write(self.services_file, json.dumps({k: v.model_dump() for k, v in services.items()}, indent=2))

    def down(self, say: Callable[[str], None], drop: bool = False) -> None:
        """Stop every process the stack started; with `drop`, delete its databases and `.team/` too."""
        services = self.services()
        order = [services[n] for n in reversed(SERVERS) if n in services and _alive(services[n].pid)]
        _stop_all(order)
        for service in order:
            say(f"stopped {service.name}")
        if drop and self.config_file.is_file():
            config = self.config()
            _drop_databases(config)
            say("dropped the stack's databases")
        _stop_all([services[n] for n in ("postgres", "mariadb") if n in services and _alive(services[n].pid)])
        if drop:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ----- processes -----
    def _spawn(self, name: str, port: int, command: list[str], env: dict[str, str], health: str) -> Service:
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            process = subprocess.Popen(
                command,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.dir,
            )
        service = Service(name=name, pid=process.pid, port=port, log=str(log))
        _wait_ready(service, process, health)
        return service

    def _start_s3(self, config: TeamConfig, services: dict[str, Service], port: int) -> Service:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        return self._spawn("s3", port, command, {}, f"http://127.0.0.1:{port}/moto-api/")

    def _start_mlflow(self, config: TeamConfig, services: dict[str, Service], port: int) -> Service:
        auth = self.dir / "mlflow-auth.ini"
        self._write(
            auth,
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {config.postgres('auth')}\nadmin_username = admin\n"
            f"admin_password = {config.mlflow_admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n",
        )
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--backend-store-uri",
            config.postgres("mlflow"),
            "--artifacts-destination",
            f"s3://{BUCKET}/mlflow",
        ]
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": config.flask_secret,
            **_s3_env(config, services["s3"].port),
        }
        return self._spawn("mlflow", port, command, env, f"http://127.0.0.1:{port}/health")

    def _start_zenml(self, config: TeamConfig, services: dict[str, Service], port: int) -> Service:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "zenml.zen_server.zen_server_api:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-server-header",
        ]
        env = {
            ZENML_STORE_URL_ENV: config.zenml_store,
            "ZENML_SERVER_AUTO_ACTIVATE": "true",
            "ZENML_DEFAULT_USER_NAME": "admin",
            "ZENML_DEFAULT_USER_PASSWORD": config.zenml_admin_password,
            "ZENML_SERVER_JWT_SECRET_KEY": config.zenml_jwt_secret,
            ZENML_CONFIG_PATH_ENV: str(self.dir / "zenml"),
            # its own folder, holding no .zen: else it searches from its working directory (.team/, inside the
            # checkout) upward, finds the checkout's ZenML repository once `cvops init --stack team` made one,
            # and answers the API-key login with 500 "No active user found"
            "ZENML_REPOSITORY_PATH": str(self.dir / "zenml"),
            "ZENML_SERVER_DEPLOYMENT_TYPE": "other",
            "ZENML_ANALYTICS_OPT_IN": "false",
            # its own http URL: without it the dashboard's login cookie is marked Secure and never sent back
            "ZENML_SERVER_SERVER_URL": f"http://127.0.0.1:{port}",
            "ZENML_ENABLE_RICH_TRACEBACK": "false",
        }
        return self._spawn("zenml", port, command, env, f"http://127.0.0.1:{port}/health")

    def _database_server(self, config: TeamConfig, kind: str, say: Callable[[str], None]) -> Service | None:
        """None when the configured server answers; otherwise a throwaway one started from the local binaries."""
        url = config.postgres_url if kind == "postgres" else config.mysql_url
        if _answers(url):
            return None
        service = (_throwaway_postgres if kind == "postgres" else _throwaway_mariadb)(self, config)
        say(
            f"no {kind} server answered at {redacted(url)}: started a throwaway one from the local binaries "
            f"on port {service.port} (data in {self.dir / kind})"
        )
        if kind not in config.throwaway:
            config.throwaway.append(kind)
        return service

    # ----- what clients need -----
    def client_env(self, config: TeamConfig, services: dict[str, Service]) -> dict[str, str]:
        trainer, _ = ROLES["trainer"]
        return {
            MLFLOW_TRACKING_URI_ENV: f"http://127.0.0.1:{services['mlflow'].port}",
            MLFLOW_TRACKING_USERNAME_ENV: trainer,
            MLFLOW_TRACKING_PASSWORD_ENV: config.passwords["trainer"],
            ZENML_STORE_URL_ENV: f"http://127.0.0.1:{services['zenml'].port}",
            ZENML_STORE_API_KEY_ENV: config.zenml_api_key or "",
            **_s3_env(config, services["s3"].port),
            S3_URL_ENV: f"s3://{BUCKET}",
            STATE_ENV: config.postgres("state"),
        }


def _s3_env(config: TeamConfig, port: int) -> dict[str, str]:
    """S3 credentials and endpoint as boto3, s3fs, DVC and MLflow all read them."""
    return {
        AWS_ACCESS_KEY_ID_ENV: config.s3_key,
        AWS_SECRET_ACCESS_KEY_ENV: config.s3_secret,
        AWS_DEFAULT_REGION_ENV: "us-east-1",
        AWS_ENDPOINT_URL_ENV: f"http://127.0.0.1:{port}",
        MLFLOW_S3_ENDPOINT_URL_ENV: f"http://127.0.0.1:{port}",
    }


def _env_text(env: dict[str, str], title: str) -> str:
    return f"# {title}\n" + "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def read_env(path: Path) -> dict[str, str]:
    """The variables of an env file written by `up` (`export KEY=value` lines)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            found[key] = shlex.split(value)[0] if value else ""
    return found


# ----- processes -----
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with suppress(OSError):  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return True


def _stop_all(services: list[Service], grace: float = 30.0) -> None:
    """SIGTERM to each service's process group, SIGKILL to what is left after `grace` seconds."""
    for service in services:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for service in services:
        while _alive(service.pid) and time.monotonic() < deadline:
            with suppress(ChildProcessError):
                os.waitpid(service.pid, os.WNOHANG)
            time.sleep(0.1)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(service.pid, signal.SIGKILL)


def _wait_ready(service: Service, process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = Path(service.log).read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            why = "exited" if process.returncode is not None else f"was not ready within {READY_SECONDS} s"
            raise TeamStackError(f"the {service.name} server {why}: {tail[0][:300]} (log {service.log})")
        time.sleep(0.3)


# ----- databases -----
def redacted(url: str) -> str:
    """`url` without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _answers(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=3):
            return True
    except OSError:
        return False


def _postgres(url: str, statements: list[str]) -> None:
    import psycopg2

    try:
        connection = psycopg2.connect(url, connect_timeout=10)
    except psycopg2.Error as err:
        why = str(err).strip().splitlines()[0]
        raise TeamStackError(f"cannot connect to PostgreSQL at {redacted(url)}: {why}") from err
    connection.autocommit = True
    _execute(connection, statements)


def _execute(connection: Any, statements: list[str]) -> None:
    """Run `statements` on a DB-API connection in autocommit mode, then close it."""
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


def _postgres_databases(url: str) -> set[str]:
    import psycopg2

    with psycopg2.connect(url, connect_timeout=10) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database")
        return {row[0] for row in cursor.fetchall()}


def _create_postgres_databases(config: TeamConfig) -> None:
    admin = f"{config.postgres_url}/postgres"
    existing = _postgres_databases(admin)
    missing = [config.database(p) for p in ("mlflow", "auth", "state") if config.database(p) not in existing]
    _postgres(admin, [f'CREATE DATABASE "{name}"' for name in missing])


def _mysql(url: str, statements: list[str]) -> None:
    import pymysql

    parts = urllib.parse.urlsplit(url)
    try:
        connection = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=urllib.parse.unquote(parts.password or ""),
            connect_timeout=10,
            autocommit=True,
        )
    except pymysql.Error as err:
        raise TeamStackError(f"cannot connect to MariaDB/MySQL at {redacted(url)}: {err.args[-1]}") from err
    _execute(connection, statements)


def _create_zenml_database(config: TeamConfig) -> None:
    """ZenML refuses a MySQL URL without a password: the stack gets its own database user."""
    name = config.database("zenml")
    statements = [f"CREATE DATABASE IF NOT EXISTS `{name}`"]
    for host in ("%", "localhost", "127.0.0.1"):
        statements += [
            f"CREATE USER IF NOT EXISTS '{name}'@'{host}' IDENTIFIED BY '{config.zenml_db_password}'",
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'{host}'",
        ]
    _mysql(config.mysql_url, statements)


def _drop_databases(config: TeamConfig) -> None:
    if _answers(config.postgres_url):
        names = [config.database(p) for p in ("mlflow", "auth", "state")]
        _postgres(f"{config.postgres_url}/postgres", [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names])
    if _answers(config.mysql_url):
        name = config.database("zenml")
        users = [f"DROP USER IF EXISTS '{name}'@'{host}'" for host in ("%", "localhost", "127.0.0.1")]
        _mysql(config.mysql_url, [f"DROP DATABASE IF EXISTS `{name}`", *users])


def _as_postgres_user(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _throwaway_postgres(stack: TeamStack, config: TeamConfig) -> Service:
    if not (PG_BIN / "initdb").is_file():
        raise TeamStackError(
            f"no PostgreSQL answers at {config.postgres_url} and {PG_BIN} has no initdb: "
            f"start PostgreSQL, or set {POSTGRES_ENV} to one"
        )
    data = stack.dir / "postgres"
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
            stack.dir.chmod(0o711)
        _set_up(
            "initdb",
            _as_postgres_user([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
            f" (as the postgres user, who must be able to reach {data})" if os.geteuid() == 0 else "",
        )
    port = urllib.parse.urlsplit(config.postgres_url).port or 5432
    if _answers(f"postgresql://127.0.0.1:{port}"):
        port = free_port()
    config.postgres_url = f"postgresql://postgres@127.0.0.1:{port}"
    command = _as_postgres_user(
        [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data), "-h", "127.0.0.1"]
    )
    return _database_process(stack, "postgres", port, command)


def _throwaway_mariadb(stack: TeamStack, config: TeamConfig) -> Service:
    if not shutil.which("mariadb-install-db") or not Path("/usr/sbin/mariadbd").is_file():
        raise TeamStackError(
            f"no MariaDB/MySQL answers at {config.mysql_url} and there are no local MariaDB "
            f"binaries: start MariaDB, or set {MYSQL_ENV} to one"
        )
    data = stack.dir / "mariadb"
    user = ["--user=root"] if os.geteuid() == 0 else []
    if not (data / "mysql").is_dir():
        data.mkdir(parents=True, exist_ok=True)
        _set_up(
            "mariadb-install-db",
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                *user,
            ],
        )
    port = free_port()
    config.mysql_url = f"mysql://root@127.0.0.1:{port}"
    command = [
        "/usr/sbin/mariadbd",
        "--no-defaults",
        f"--datadir={data}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={data / 'mariadb.sock'}",
        f"--pid-file={data / 'mariadb.pid'}",
        *user,
    ]
    return _database_process(stack, "mariadb", port, command)


def _set_up(what: str, command: list[str], hint: str = "") -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise TeamStackError(f"{what} failed{hint}: {last}")


def _database_process(stack: TeamStack, name: str, port: int, command: list[str]) -> Service:
    log = stack.dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _answers(f"db://127.0.0.1:{port}"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise TeamStackError(f"the throwaway {name} server did not start (log {log})")
        time.sleep(0.2)
    return Service(name=name, pid=process.pid, port=port, log=str(log))


# ----- S3, MLflow users, ZenML API key -----
def _make_bucket(config: TeamConfig, port: int) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        aws_access_key_id=config.s3_key,
        aws_secret_access_key=config.s3_secret,
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
    )
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)


def create_mlflow_users(server: str, admin: tuple[str, str], passwords: dict[str, str], model_name: str) -> None:
    """The three users (ROLES, with `passwords` by role), the registered model (created by the admin, so no
    user owns it) and their grants on it; what exists already is left as it is."""
    base = f"{server.rstrip('/')}/api"

    def call(path: str, body: dict[str, Any]) -> None:
        try:
            status, answer = http_json("POST", base + path, body, auth=admin)
        except OSError as err:
            raise TeamStackError(f"the MLflow server {server} does not answer: {err}") from err
        if status != 200 and "already exists" not in str(answer.get("message", "")):  # up again: all there
            raise TeamStackError(f"MLflow {path} answered {status}: {answer.get('message', answer)}")

    for role, (user, _) in ROLES.items():
        call("/2.0/mlflow/users/create", {"username": user, "password": passwords[role]})
    call("/2.0/mlflow/registered-models/create", {"name": model_name})
    for user, permission in ROLES.values():
        call(
            "/3.0/mlflow/users/permissions/grant",
            {
                "username": user,
                "resource_type": "registered_model",
                "resource_id": model_name,
                "permission": permission,
            },
        )


def zenml_admin_token(config: TeamConfig, server: str) -> str:
    """A session token of the ZenML server's admin."""
    status, login = http_json(
        "POST", f"{server}/api/v1/login", form={"username": "admin", "password": config.zenml_admin_password}
    )
    if status != 200:
        raise TeamStackError(f"the ZenML server refused its admin login ({status})")
    return str(login["access_token"])


def _zenml_api_key(config: TeamConfig, port: int) -> str:
    """An API key of the pipelines' service account: what clients use instead of a password."""
    server = f"http://127.0.0.1:{port}"
    base, token = f"{server}/api/v1", zenml_admin_token(config, server)
    status, account = http_json(
        "POST", f"{base}/service_accounts", {"name": ZENML_SERVICE_ACCOUNT, "active": True}, token=token
    )
    if status == 409:
        status, account = http_json("GET", f"{base}/service_accounts/{ZENML_SERVICE_ACCOUNT}", token=token)
    if status != 200:
        raise TeamStackError(f"the ZenML server did not create the service account ({status}: {account})")
    name = f"cvops-{secrets.token_hex(3)}"
    status, key = http_json("POST", f"{base}/service_accounts/{account['id']}/api_keys", {"name": name}, token=token)
    if status != 200:
        raise TeamStackError(f"the ZenML server did not create an API key ({status})")
    return str(key["body"]["key"])
