"""cvops's shared state (drift episodes, the trigger audit), and locks every process that shares it respects.

The state URL is `state.url` in params.yaml, or CVOPS_STATE_URL, which wins (`.team/env` sets it):
`Project.state_url`. Without
one, state is local to the checkout and locks are files under it. With a PostgreSQL URL (the team stack),
locks are PostgreSQL advisory locks: they hold across hosts, and the server releases a lock the moment the
session holding it ends, however its process ended.
"""

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from cvops.stack.migrations import STATE, migrate


class LockBusy(Exception):
    """Another process holds the lock."""


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name`."""
    return int.from_bytes(hashlib.sha256(f"cvops:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def held(name: str, url: str | None, local_dir: Path, wait: float) -> Iterator[None]:
    """Hold lock `name` for the block, waiting up to `wait` seconds (0: fail at once) or raising LockBusy.

    With a PostgreSQL `url` the lock is shared by every host on that database; otherwise it is a file in
    `local_dir`, shared by the processes of this machine.
    """
    if url and url.startswith(("postgresql://", "postgres://")):
        with _advisory(url, _key(name), wait):
            yield
        return
    local_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(local_dir / f"{name}.lock")
    try:
        lock.acquire(timeout=wait)
    except filelock.Timeout as err:
        raise LockBusy(str(lock.lock_file)) from err
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _advisory(url: str, key: int, wait: float) -> Iterator[None]:
    import psycopg2

    connection = psycopg2.connect(url, connect_timeout=10, application_name="cvops-lock")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            deadline = time.monotonic() + wait
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                if cursor.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    raise LockBusy(f"PostgreSQL advisory lock {key}")
                time.sleep(0.2)
        yield
    finally:
        connection.close()  # ends the session, which releases the lock


class SharedState:
    """Documents (one text per name, replaced atomically) and append-only logs of text lines: files in
    `directory`, or two tables of the PostgreSQL state database at `url`, where every host sees them."""

    def __init__(self, directory: Path, url: str | None = None) -> None:
        self.directory = directory
        self.url = url if url and url.startswith(("postgresql://", "postgres://")) else None
        if self.url is None:
            directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        import psycopg2

        connection = psycopg2.connect(self.url, connect_timeout=10, application_name="cvops-state")
        try:
            migrate(connection, STATE)
            with connection, connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()

    def read(self, name: str) -> str | None:
        if self.url is None:
            path = self.directory / name
            return path.read_text() if path.is_file() else None
        with self._cursor() as cursor:
            cursor.execute("SELECT body FROM cvops_documents WHERE name = %s", (name,))
            found = cursor.fetchone()
        return None if found is None else str(found[0])

    def write(self, name: str, body: str) -> None:
        if self.url is None:
            partial = self.directory / f"{name}.partial"
            partial.write_text(body)
            os.replace(partial, self.directory / name)
            return
        with self._cursor() as cursor:
            cursor.execute(
                "INSERT INTO cvops_documents (name, body) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body",
                (name, body),
            )

    def append(self, name: str, line: str) -> None:
        if self.url is None:
            with (self.directory / name).open("a") as f:
                f.write(line + "\n")
            return
        with self._cursor() as cursor:
            cursor.execute("INSERT INTO cvops_logs (name, line) VALUES (%s, %s)", (name, line))

    def lines(self, name: str) -> list[str]:
        if self.url is None:
            path = self.directory / name
            return [line for line in path.read_text().splitlines() if line] if path.is_file() else []
        with self._cursor() as cursor:
            cursor.execute("SELECT line FROM cvops_logs WHERE name = %s ORDER BY id", (name,))
            return [str(line) for (line,) in cursor.fetchall()]
