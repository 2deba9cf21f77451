"""The schema of cvops's tables in a team's PostgreSQL state database, numbered and migrated forward.

Two parts of cvops keep tables there: the shared state (`state.SharedState`: documents and logs) and the
inference log with its feedback (`serving.inference_log`). Each part's schema has a number, recorded in
`cvops_schema`; the first connection of a newer cvops brings an older database forward, one migration after
another, under a lock so that replicas starting together migrate it once. Databases made before the numbers
existed hold the tables of version 1 and no row: they count as version 1. A database newer than this cvops is
refused with the command that upgrades cvops, before anything is read or written.

Migrations only add (tables, columns, indexes): a replica still running the older cvops keeps working.
"""

from dataclasses import dataclass
from typing import Any

from cvops.errors import ConfigError

VERSIONS_TABLE = "cvops_schema"


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    statements: tuple[str, ...]


STATE = "state"
INFERENCE_LOG = "inference_log"
FIRST_TABLES = {STATE: "cvops_documents", INFERENCE_LOG: "cvops_inference_log"}  # present from version 1 on
# cvops_inference_log's generated column: whether a row is an answer a client received (monitoring's input),
# computed once when the row is written instead of from its JSON on every read ('shadow': inference_log.SHADOW;
# a migration is history, never edited)
ANSWER = "COALESCE(body->>'arm', '') <> 'shadow' AND COALESCE(body->>'status', '200') = '200'"
MIGRATIONS: dict[str, tuple[Migration, ...]] = {
    STATE: (
        Migration(
            1,
            "documents and append-only logs",
            (
                "CREATE TABLE IF NOT EXISTS cvops_documents (name TEXT PRIMARY KEY, body TEXT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS cvops_logs (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, "
                "line TEXT NOT NULL)",
            ),
        ),
        Migration(2, "logs read by name", ("CREATE INDEX IF NOT EXISTS cvops_logs_name ON cvops_logs (name, id)",)),
    ),
    INFERENCE_LOG: (
        Migration(
            1,
            "the inference log and the feedback",
            (
                "CREATE TABLE IF NOT EXISTS cvops_inference_log (id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL, "
                "replica TEXT NOT NULL, body JSONB NOT NULL)",
                "CREATE INDEX IF NOT EXISTS cvops_inference_log_at ON cvops_inference_log (at)",
                "CREATE INDEX IF NOT EXISTS cvops_inference_log_request ON cvops_inference_log ((body->>'request_id'))",
                "CREATE TABLE IF NOT EXISTS cvops_feedback (request_id TEXT PRIMARY KEY, at TIMESTAMPTZ NOT NULL, "
                "body JSONB NOT NULL)",
            ),
        ),
        Migration(
            2,
            "answers marked when written, read by time",
            (
                "ALTER TABLE cvops_inference_log ADD COLUMN IF NOT EXISTS answer BOOLEAN "
                f"GENERATED ALWAYS AS ({ANSWER}) STORED",
                "CREATE INDEX IF NOT EXISTS cvops_inference_log_answer_at ON cvops_inference_log (at) WHERE answer",
            ),
        ),
    ),
}


def latest(part: str) -> int:
    return MIGRATIONS[part][-1].version


def current(cursor: Any, part: str) -> int:
    """The schema version of `part` in the database: 0 where it has none of its tables yet."""
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSIONS_TABLE,))
    if cursor.fetchone()[0]:
        cursor.execute(f"SELECT version FROM {VERSIONS_TABLE} WHERE part = %s", (part,))
        found = cursor.fetchone()
        if found is not None:
            return int(found[0])
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (FIRST_TABLES[part],))  # made before versions were
    return 1 if cursor.fetchone()[0] else 0  # recorded: version 1


_checked: set[tuple[str, str]] = set()  # (database, part) this process found current: checked once


def migrate(connection: Any, part: str) -> list[Migration]:
    """Bring `part`'s tables to this cvops's version (in one transaction, under a lock every host respects);
    the migrations applied. ConfigError when the database is newer than this cvops."""
    if (connection.dsn, part) in _checked:
        return []
    applied = _migrate(connection, part)
    _checked.add((connection.dsn, part))
    return applied


def _migrate(connection: Any, part: str) -> list[Migration]:
    with connection, connection.cursor() as cursor:
        if (found := current(cursor, part)) == latest(part):
            return []
        _check_not_newer(found, part)
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cvops-migrate-{part}",))
        found = current(cursor, part)  # another host may have migrated while this one waited
        _check_not_newer(found, part)
        applied = [migration for migration in MIGRATIONS[part] if migration.version > found]
        for migration in applied:
            for statement in migration.statements:
                cursor.execute(statement)
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (part TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        cursor.execute(
            f"INSERT INTO {VERSIONS_TABLE} (part, version) VALUES (%s, %s) "
            "ON CONFLICT (part) DO UPDATE SET version = EXCLUDED.version",
            (part, latest(part)),
        )
        return applied


def _check_not_newer(found: int, part: str) -> None:
    if found > latest(part):
        raise ConfigError(
            f"the state database's {part} tables are schema {found}, newer than this cvops knows ({latest(part)}): "
            "upgrade cvops (pip install --upgrade cvops) on this host"
        )
