"""A checkout as a user's clone has it: the repository's dvc.yaml and params.yaml (or the params a test
wants, written as params.yaml) committed in a fresh git repo. The one recipe every test that needs a checkout
uses."""

import base64
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import yaml

from cvops.config import Params, Project

REPO = Path(__file__).resolve().parents[1]
COMMIT = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "checkout"]


def new_checkout(
    root: Path, params: Params | None = None, overrides: tuple[str, ...] = (), gitignore: bool = False
) -> Path:
    """`root` (created if missing) as a git repo with what a clone of this repository has for a project: dvc.yaml,
    DVC's files (.dvc/config, .dvc/.gitignore, .dvcignore), params.yaml (`params` if given, edited by `overrides`
    as `cvops params set` edits it) and, with `gitignore`, the repository's .gitignore, in one commit."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text((REPO / name).read_text())
    if params is None:
        (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    else:
        (root / "params.yaml").write_text(yaml.safe_dump(params.as_params(), sort_keys=False))
    if overrides:
        Project(root).set_params(list(overrides))
    if gitignore:
        (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    for command in (["init", "-q"], ["add", "."], COMMIT):
        subprocess.run(["git", *command], cwd=root, check=True)
    return root


def copy_checkout(template: Path, root: Path) -> Path:
    """A copy of the checkout `template` at `root` that is its own: a checkout's stores hold absolute paths
    (MLflow's artifact locations, ZenML's store and its MLflow tracker, DVC's remote), so each is rewritten to
    the copy, and a copy that still names the template anywhere is refused."""
    shutil.copytree(template, root, symlinks=True)
    old, new = str(template), str(root)
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and ".git" not in p.parts]
    for path in files:
        if path.read_bytes().startswith(b"SQLite format 3"):
            with closing(sqlite3.connect(path)) as db, db:
                for table, column, rowid, value in _values(db):
                    changed = _relocated(value, old, new)
                    if changed is not None:
                        db.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?', (changed, rowid))
        elif old.encode() in path.read_bytes():
            path.write_bytes(path.read_bytes().replace(old.encode(), new.encode()))
    left = [str(path) for path in files if _holds(path, old)]
    assert not left, f"the copy of {template} still names it in {left}"
    return root


def _values(db: sqlite3.Connection) -> Iterator[tuple[str, str, int, object]]:
    """Every value of the database: (table, column, rowid, value)."""
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
            for rowid, value in db.execute(f'SELECT rowid, "{column}" FROM "{table}"').fetchall():
                yield table, column, rowid, value


def _relocated(value: object, old: str, new: str) -> object | None:
    """`value` with `old` rewritten to `new` (in the base64-encoded JSON ZenML keeps component configurations
    in, too), or None when it does not hold `old`."""
    if isinstance(value, str):
        return value.replace(old, new) if old in value else None
    if not isinstance(value, bytes):
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except ValueError:  # not base64 text (UnicodeDecodeError is a ValueError)
        return value.replace(old.encode(), new.encode()) if old.encode() in value else None
    return base64.b64encode(decoded.replace(old, new).encode()) if old in decoded else None


def _holds(path: Path, old: str) -> bool:
    if not path.read_bytes().startswith(b"SQLite format 3"):
        return old.encode() in path.read_bytes()
    with closing(sqlite3.connect(path)) as db:
        return any(_relocated(value, old, old + "/") is not None for *_, value in _values(db))
