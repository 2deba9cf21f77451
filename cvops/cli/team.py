"""`cvops team ...`: a complete team stack on this machine, for trying it and for tests (`make team-up`)."""

import click

from cvops.cli.app import JSON_HELP, main, project
from cvops.env import (
    MLFLOW_TRACKING_PASSWORD_ENV,
    MLFLOW_TRACKING_URI_ENV,
    MLFLOW_TRACKING_USERNAME_ENV,
    ZENML_STORE_URL_ENV,
    role_env,
)

TEAM_DIR = ".team"


@main.group()
def team() -> None:
    """Start and stop a team stack on this machine: PostgreSQL + MariaDB databases, an S3-compatible server,
    the MLflow server with users and permissions, the ZenML server. No Docker needed.

    \b
    Example:
      cvops team up                  # or: make team-up
      . .team/env && cvops init --stack team
      cvops run training
      cvops team down                # or: make team-down (state stays in .team/ and the databases)
    """


@team.command("up")
def team_up() -> None:
    """Start the stack (what is not already running) and write .team/env and .team/users.env.

    \b
    Examples:
      cvops team up && . .team/env && cvops init --stack team
      CVOPS_TEAM_POSTGRES_URL=postgresql://postgres@db:5432/postgres cvops team up   # another PostgreSQL
    """
    from cvops.stack.team import TeamStack

    checkout = project()
    stack = TeamStack(checkout.root / TEAM_DIR)
    env = stack.up(checkout.params().registry.model_name, say=lambda line: click.echo(f"  {line}"))
    click.secho(f"team stack up: MLflow {env[MLFLOW_TRACKING_URI_ENV]}, ZenML {env[ZENML_STORE_URL_ENV]}", fg="green")
    click.echo(f"next: `. {TEAM_DIR}/env && cvops init --stack team`; other users' credentials: {TEAM_DIR}/users.env")


@team.command("down")
@click.option("--drop", is_flag=True, help="Also delete the stack's databases and .team/ (everything it stored).")
def team_down(drop: bool) -> None:
    """Stop every process the stack started; its state stays for the next `up` unless --drop.

    \b
    Examples:
      cvops team down               # `cvops team up` starts it again with what it stored
      cvops team down --drop        # and delete its databases and .team/
    """
    from cvops.stack.team import TeamStack

    TeamStack(project().root / TEAM_DIR).down(say=lambda line: click.echo(f"  {line}"), drop=drop)
    click.secho("team stack down" + (" and dropped" if drop else ""), fg="green")


@team.command("status")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def team_status(as_json: bool) -> None:
    """Which of the stack's processes are running, on which port.

    \b
    Examples:
      cvops team status
      cvops team status --json | jq -e 'all(.services[]; .running)'   # exit 0 when all are up
    """
    from cvops.stack.team import TeamStack

    status = TeamStack(project().root / TEAM_DIR).status()
    if as_json:
        return click.echo(status.model_dump_json(indent=2))
    for service in status.services:
        state = "running" if service.running else "stopped"
        click.echo(f"  {service.name:8} {state:8} {service.url}  (log {service.log})")
    if not any(service.running for service in status.services):
        click.echo("the team stack is not running: `cvops team up`")


@team.command("users")
def team_users() -> None:
    """Create the trainer, reviewer and viewer users and their grants on an MLflow server you run yourself
    (compose, Kubernetes), as its admin. Safe to re-run.

    Reads the server and the admin's credentials from MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD and the
    three passwords from CVOPS_TRAINER_PASSWORD, CVOPS_REVIEWER_PASSWORD, CVOPS_VIEWER_PASSWORD.

    \b
    Example:
      MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... cvops team users
    """
    import os

    from cvops.errors import ConfigError
    from cvops.stack.team import ROLES, create_mlflow_users

    needed = [
        MLFLOW_TRACKING_URI_ENV,
        MLFLOW_TRACKING_USERNAME_ENV,
        MLFLOW_TRACKING_PASSWORD_ENV,
        *(role_env(role, "PASSWORD") for role in ROLES),
    ]
    if missing := [name for name in needed if not os.environ.get(name)]:
        raise ConfigError(f"`cvops team users` needs {', '.join(missing)}")
    env = os.environ
    model = project().params().registry.model_name
    passwords = {role: env[role_env(role, "PASSWORD")] for role in ROLES}
    admin = (env[MLFLOW_TRACKING_USERNAME_ENV], env[MLFLOW_TRACKING_PASSWORD_ENV])
    create_mlflow_users(env[MLFLOW_TRACKING_URI_ENV], admin, passwords, model)
    granted = ", ".join(f"{user} {permission}" for user, permission in ROLES.values())
    click.secho(f"MLflow users on {env[MLFLOW_TRACKING_URI_ENV]}, on registered model {model}: {granted}", fg="green")
