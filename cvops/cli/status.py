"""`cvops status`: where this project stands."""

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
