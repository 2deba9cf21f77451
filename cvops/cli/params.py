"""`cvops params ...`: the project's params.yaml, changed on purpose and shown as a diff."""

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from cvops.cli.app import main, project
from cvops.config import PARAMS_SCHEMA


@main.group()
def params() -> None:
    """Change params.yaml, the values every run of this project reads (commit it with git).

    A value for one run only is `-S KEY=VALUE` on that run, or an `--overlay` file.
    """


@params.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def params_set(assignments: tuple[str, ...]) -> None:
    """Write each KEY=VALUE into params.yaml, keeping its comments and layout, and print the diff.

    Values are read as YAML (3, 1e-3, true, null, [L, RGB]); every value is checked before anything is
    written.

    \b
    Examples:
      cvops params set train.epochs=10 train.lr=3e-4
      cvops params set "validate.allowed_modes=[L, RGB, CMYK]"
      git diff params.yaml && git commit -am "train longer"
    """
    checkout = project()
    with _diff_printed(checkout.params_file) as unchanged:
        checkout.set_params(list(assignments))
    if unchanged():
        click.echo(f"{checkout.params_file.name}: unchanged (every value was set already)")


@params.command("upgrade")
def params_upgrade() -> None:
    """Bring params.yaml to this cvops's schema, keeping its results, and print the diff.

    A key a later cvops brought that changes results (how images are resized, which shapes validation
    accepts) is written with the value that reproduces what the file meant when it was written; change it
    afterwards with `cvops params set`. An older file is read as written until then; a file newer than this
    cvops is refused with the command that upgrades cvops.

    \b
    Examples:
      cvops params upgrade
      git diff params.yaml && git commit -am "params.yaml: schema 2"
    """
    checkout = project()
    with _diff_printed(checkout.params_file):
        schema, _ = checkout.upgrade_params()
    name = checkout.params_file.name
    if schema == PARAMS_SCHEMA:
        click.echo(f"{name}: schema {PARAMS_SCHEMA} already, nothing to upgrade")
    else:
        click.secho(f"{name}: schema {schema} -> {PARAMS_SCHEMA}; commit it", fg="green")


@contextmanager
def _diff_printed(path: Path) -> Iterator[Callable[[], bool]]:
    """Print the unified diff of what the block changed in `path`; yields whether it changed nothing."""
    before, changed = path.read_text(encoding="utf-8"), False
    yield lambda: not changed
    after = path.read_text(encoding="utf-8")
    diff = list(
        difflib.unified_diff(before.splitlines(), after.splitlines(), f"a/{path.name}", f"b/{path.name}", lineterm="")
    )
    changed = bool(diff)
    for line in diff:
        color = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1]) if line[:3] not in ("+++", "---") else None
        click.secho(line, fg=color)
