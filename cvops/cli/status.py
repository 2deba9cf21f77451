"""`cvops status` (where this project stands) and `cvops doctor` (whether this machine can run it)."""

import click

from cvops.cli.app import JSON_HELP, main, project


@main.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def status(as_json: bool) -> None:
    """Where this project stands: its root, task and stack, whether its servers answer, the data version,
    the champion and challenger with what they ship, and the last training and monitoring runs with their
    verdicts. Reads the stores only; changes nothing.

    \b
    Examples:
      cvops status
      cvops status --json | jq -r '.versions[] | select(.alias == "champion") | .version'
    """
    from cvops.cli.launch import monitoring_experiment
    from cvops.stack.status import project_status

    checkout = project()
    params = checkout.params()
    found = project_status(checkout, params, monitoring_experiment(params))
    if as_json:
        return click.echo(found.model_dump_json(indent=2))
    click.echo(f"{'project:':<16}{found.root}  (task {found.task}, model {found.model}, {found.stack} stack)")
    for server in found.servers:
        state = click.style("answers", fg="green") if server.answers else click.style("no answer", fg="yellow")
        click.echo(f"  {server.name:<14}{server.url}  {state}")
    click.echo(f"{'data:':<16}{found.data_version or 'not prepared yet (`cvops run training` prepares it)'}")
    for version in found.versions:
        score = f" {version.ships_score:.4f}" if version.ships_score is not None else ""
        click.echo(
            f"{version.alias + ':':<16}version {version.version}, ships {version.ships or '—'}{score}, "
            f"approval {version.approval}"
        )
    if not found.versions:
        click.echo(f"{'versions:':<16}no champion or challenger yet")
    for run in (found.last_training, found.last_monitoring):
        if run is not None:
            which = f", version {run.model_version}" if run.model_version else ""
            click.echo(
                f"{'last ' + run.pipeline + ':':<16}{run.run_name} at {run.started:%Y-%m-%d %H:%M} UTC, "
                f"{run.status.lower()}, {run.verdict or 'no verdict'}{which}"
            )


@main.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option(
    "--apt", is_flag=True, help="Only print the Debian packages to install (what `make system-deps` installs)."
)
def doctor(as_json: bool, apt: bool) -> None:
    """Check that cvops can run here: versions, cvops's requirements and the pinned set as installed, the servers
    and databases this project uses, writable folders, disk space, system packages. Each problem is printed with
    the command that fixes it; any problem exits 15. Outside a project, the machine's checks only.

    \b
    Examples:
      cvops doctor
      sudo apt-get install $(cvops doctor --apt)    # what `make system-deps` does
    """
    from cvops.config import Project
    from cvops.errors import CvopsError, UnhealthyError
    from cvops.stack.doctor import diagnose, missing_system_packages

    if apt:
        return click.echo(" ".join(missing_system_packages()))
    try:
        checkout: Project | None = project()
    except CvopsError:  # outside a project
        checkout = None
    found = diagnose(checkout, checkout.params() if checkout else None)
    if as_json:
        click.echo(found.model_dump_json(indent=2))
    else:
        click.echo("  ".join(f"{name} {version}" for name, version in found.versions.items()))
        for check in found.checks:
            mark = click.style("ok ", fg="green") if check.ok else click.style("!! ", fg="red")
            click.echo(f"{mark} {check.name}: {check.detail}" + (f"\n    fix: {check.fix}" if check.fix else ""))
    if found.problems:
        raise UnhealthyError(
            f"{len(found.problems)} problems: {', '.join(c.name for c in found.problems)} (fixes above)"
        )
