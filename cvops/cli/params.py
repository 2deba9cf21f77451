"""`cvops params ...`: the project's params.yaml, changed on purpose and shown as a diff."""

import difflib

import click

from cvops.cli.app import main, project


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
    before = checkout.params_file.read_text(encoding="utf-8")
    checkout.set_params(list(assignments))
    after = checkout.params_file.read_text(encoding="utf-8")
    name = checkout.params_file.name
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), f"a/{name}", f"b/{name}", lineterm=""))
    if not diff:
        click.echo(f"{name}: unchanged (every value was set already)")
    for line in diff:
        color = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1]) if line[:3] not in ("+++", "---") else None
        click.secho(line, fg=color)
