"""`cvops models ...`: review registered versions, promote with approval, reject, roll back, reproduce."""

from datetime import datetime

import click

from cvops.cli import render
from cvops.cli.app import JSON_HELP, Since, initialized_project, main, project, registry


@main.group()
def models() -> None:
    """Review registered versions: evidence, promotion with approval, rejection, rollback, reproduction.

    \b
    Aliases: champion (served), challenger (newest passing version), previous (for rollback). Every command
    that takes a VERSION takes its number or one of these aliases.
    Example review:
      cvops models list
      cvops models show 3
      cvops models promote 3 --reviewer alice --note "beats v2 on poly cells"
      cvops models rollback --reviewer bob --reason "false rejects in production"
    """


@models.command("list")
@click.option("--model", "model_name", help="Another registered model (default: registry.model_name or the task's).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def models_list(model_name: str | None, as_json: bool) -> None:
    """Every version, newest first: aliases, metrics, gate verdict, approval, data version, created.

    \b
    Examples:
      cvops models list
      cvops models list --model cvops-detector
      cvops models list --json | jq '.versions[] | select(.gate == "passed") | .version'
    """
    from cvops.registry.listing import VersionList

    listed = VersionList.of(registry(project(), model_name=model_name))
    if as_json:
        return click.echo(listed.model_dump_json(indent=2))
    render.versions(listed)


@models.command("show")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def models_show(version: str, as_json: bool) -> None:
    """The evidence for VERSION: approval record, lineage, MLflow run, parameters that differ from the
    defaults, gate table, deployment artifact, champion comparison, slices, model card.

    \b
    Examples:
      cvops models show 3
      cvops models show challenger
      cvops models show champion --json | jq .shipped
    """
    from cvops.registry.listing import VersionDetail
    from cvops.registry.review import review_version

    versions = registry(project())
    review = review_version(versions, versions.resolve(version).version)
    if as_json:
        return click.echo(VersionDetail.of(versions, review).model_dump_json(indent=2))
    render.version(review)


@models.command("review")
def models_review() -> None:
    """Show the evidence for the current challenger (the version waiting for a reviewer).

    The gate, the comparison with the champion on the same test images, the slices, what ships and the model
    card, then the commands that decide.

    \b
    Examples:
      cvops models review
      cvops models review && cvops models promote 2 --reviewer alice --note "gate and slices reviewed"
    """
    from cvops.registry.review import review_challenger

    models_registry = registry(project())
    review = review_challenger(models_registry)
    render.version(review)
    version, reviewer = review.info.version, models_registry.reviewer_option()
    click.echo(
        f"\ndecide: `cvops models promote {version}{reviewer} [--note TEXT]` "
        f"or `cvops models reject {version}{reviewer} --reason TEXT`"
    )


@models.command("promote")
@click.argument("version")
@click.option(
    "--reviewer", help="Who approves (recorded as approved_by); with a team stack, the signed-in MLflow user."
)
@click.option("--note", default="", help="Why (recorded as approval_note); required with --override.")
@click.option("--override", is_flag=True, help="Promote although the gate failed (needs --note).")
def models_promote(version: str, reviewer: str | None, note: str, override: bool) -> None:
    """Make VERSION the champion (served); the old champion becomes `previous`.

    \b
    Examples:
      cvops models promote 3 --reviewer alice --note "better on poly cells"
      cvops models promote 4 --reviewer alice --override --note "latency budget waived for the pilot"
      cvops models promote challenger --reviewer alice
    """
    versions = registry(project())
    version = versions.resolve(version).version
    old = versions.promote(version, reviewer, note, override)
    click.secho(
        f"version {version} is the champion (approved by {versions.get(version).tags['approved_by']})", fg="green"
    )
    if old is not None:
        click.echo(f"version {old.version} is `previous`: `cvops models rollback` restores it")


@models.command("reject")
@click.argument("version")
@click.option("--reviewer", help="Who rejects (recorded as rejected_by); with a team stack, the signed-in MLflow user.")
@click.option("--reason", required=True, help="Why (recorded as approval_note).")
def models_reject(version: str, reviewer: str | None, reason: str) -> None:
    """Reject VERSION: it loses its alias and can never be promoted.

    \b
    Example:
      cvops models reject 4 --reviewer alice --reason "misses cracks on poly cells"
    """
    versions = registry(project())
    version = versions.resolve(version).version
    versions.reject(version, reviewer, reason)
    click.secho(f"version {version} rejected by {versions.get(version).tags['rejected_by']}", fg="yellow")


@models.command("rollback")
@click.option("--reviewer", help="Who rolls back (recorded on both); with a team stack, the signed-in MLflow user.")
@click.option("--reason", required=True, help="Why (recorded on both versions).")
def models_rollback(reviewer: str | None, reason: str) -> None:
    """Give `champion` back to the `previous` version, recording who and why.

    \b
    Example:
      cvops models rollback --reviewer bob --reason "false alarms since the promotion"
    """
    restored, demoted = registry(project()).rollback(reviewer, reason)
    click.secho(f"rolled back: version {restored.version} is the champion again (was {demoted.version})", fg="green")


@models.command("reproduce")
@click.argument("version")
@click.option("--keep", is_flag=True, help="Keep the temporary worktree (its path is printed) for inspection.")
def models_reproduce(version: str, keep: bool) -> None:
    """Recreate VERSION's inputs from its lineage and train it again, then compare the two side by side.

    The version's git commit is checked out in a temporary worktree, its data restored through DVC (from
    the cache or the remote), its logged parameters written there, and the training pipeline run. The rerun
    goes to the experiment `<experiment>-reproduce` and the registered model `<name>-reproduce`: no alias
    of the original moves. The original gets tags saying when it was reproduced and what differed.
    Exits 12 when the commit, data or parameters are missing, 13 when the rerun does not reproduce.

    \b
    Example:
      cvops models reproduce 3
    """
    from cvops.cli.reproduce import reproduce_version
    from cvops.errors import NotReproducedError

    checkout = initialized_project()
    version = registry(checkout).resolve(version).version
    result = reproduce_version(checkout, version, keep)
    render.reproduction(result)
    if not result.reproduced:
        raise NotReproducedError(f"version {version} was not reproduced: {result.verdict}")


@models.command("compare-live")
@click.option(
    "--since",
    type=Since(),
    default="24h",
    show_default=True,
    help="Compare the traffic logged since a time (ISO, UTC) or for an age: 90m, 6h, 2d.",
)
@click.option(
    "--min-requests",
    type=click.IntRange(1),
    metavar="N",
    help="Fewer predictions on a side is too little to conclude (default: monitor.min_samples).",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def models_compare_live(since: datetime, min_requests: int | None, as_json: bool) -> None:
    """Compare the served arms on live traffic: per arm (champion, canary, shadow) predictions, error rate,
    latency p50/p95, scores and label mix; the canary tested against the champion, the shadow's agreement
    with the champion on the same requests. Writes an HTML report under reports/live and logs it to MLflow.

    \b
    Examples:
      cvops serve --canary challenger --shadow previous    # then, after some traffic:
      cvops models compare-live --since 6h
      cvops models compare-live --json | jq '.arms'
    """
    from cvops.monitoring.live import compare_served_arms

    checkout = project()
    comparison, page = compare_served_arms(checkout, checkout.params(), since, min_requests)
    if as_json:
        return click.echo(comparison.model_dump_json(indent=2))
    click.echo(comparison.table())
    click.echo(f"report: {page}")
