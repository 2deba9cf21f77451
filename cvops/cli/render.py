"""How the command line shows results: tables and summaries on the terminal. No logic beyond layout."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cvops.registry.aliases import CHAMPION
from cvops.tasks import task

if TYPE_CHECKING:
    from cvops.cli.launch import TrainingResult
    from cvops.cli.reproduce import Reproduction
    from cvops.cli.scheduler import MonitoringResult
    from cvops.data.audit import DataAudit
    from cvops.data.validation import ValidationReport
    from cvops.data.versioning import DataStatus
    from cvops.registry.listing import VersionList
    from cvops.registry.review import VersionReview

STATUS_COLOURS = {"drift": "red", "no_drift": "green", "not_enough_data": "yellow"}
SHOWN_TAGS = (
    "approved_by",
    "approved_at",
    "approval_note",
    "rejected_by",
    "rejected_at",
    "gate_override",
    "rolled_back_by",
    "rolled_back_at",
    "rollback_reason",
    "git_commit",
    "git_dirty",
    "overrides",
    "data_version",
    "params_hash",
    "zenml_run_id",
    "shipped_format",
    "reproduced_at",
    "reproduce_verdict",
)


def submitted() -> None:
    click.echo("pipeline submitted to the orchestrator; follow it with `zenml pipeline runs list`")


def changed_params(changed: list[tuple[str, Any]], where: str = "params.yaml") -> None:
    for key, value in changed:
        click.echo(f"{where}: {key} = {value}")


def committed_params_diff(differences: list[tuple[str, Any, Any]]) -> None:
    """The values this run uses that differ from the committed params.yaml."""
    if differences:
        click.echo("this run differs from the committed params.yaml:")
        for key, committed, now in differences:
            click.echo(f"  {key}: {now} (committed: {committed})")


def data_status(status: "DataStatus") -> None:
    shape = f"{status.image_size}px by {status.resize}"
    click.echo(f"data version: {status.data_version}  ({shape}, classes: {', '.join(status.classes)})")
    width = max(len(c) for c in [*status.classes, "class"])
    click.echo(f"  {status.unit} per class and split:")
    click.echo(f"  {'class':<{width}}  " + "  ".join(f"{s:>6}" for s in status.counts))
    for name in status.classes:
        counts = "  ".join(f"{status.counts[s].get(name, 0):>6}" for s in status.counts)
        click.echo(f"  {name:<{width}}  {counts}")
    if status.production:
        click.echo(f"  of them {status.production} labelled production images (`cvops labels import`)")
    if status.changes:
        click.secho(
            f"workspace differs from dvc.lock: {status.changes}; run `dvc repro` or `cvops run training`", fg="yellow"
        )
    else:
        click.secho("workspace matches dvc.lock", fg="green")


def validation(report: "ValidationReport") -> None:
    click.echo(report.summary(), err=not report.passed)


def audit(found: "DataAudit", html_report: Path, max_leakage: int | None) -> None:
    click.echo(found.summary())
    for pair in found.leaks[:10]:
        held, kept = pair.held_out(), pair.train_copy()
        click.echo(f"  leaked {held.split} image {held.path}: a near-copy of train image {kept.path}")
    for issue in found.label_issues[:10]:
        click.echo(f"  label? {issue.path} ({issue.split}): labelled {issue.label}, looks like {issue.suspected}")
    leaked = len(found.leaked("test"))
    if max_leakage is not None and leaked > max_leakage:
        click.secho(
            f"the gate refuses a model trained on this split: {leaked} test images leaked (gate.max_leakage "
            f"{max_leakage}); remove or move them",
            fg="yellow",
        )
    click.echo(f"report: {html_report}")


def training(result: "TrainingResult", experiment: str, reviewer_option: str) -> None:
    evaluation, info = result.evaluation, result.info
    click.echo(f"\n{result.quantization.summary()}\n\n{result.decision.table()}")
    headline = task(evaluation.task).report.headline(evaluation.metrics)
    click.secho(f"\ntest {headline}", fg="green", bold=True)
    click.echo(f"MLflow run:       {result.trained.run_id} (experiment '{experiment}')")
    click.echo(f"ZenML run:        {result.run_name}")
    click.echo(
        f"registered model: {result.model_name} version {info.version} [{', '.join(info.aliases) or 'no alias'}]"
    )
    click.echo(f"model card:       {info.tags.get('model_card', '')}")
    if info.tags.get("bento"):
        click.echo(
            f"bento:            {info.tags['bento']} (`cvops serve --version {info.version}` or infra/README.md)"
        )
    if result.student is not None:
        _student(result.student, result.version, experiment, reviewer_option)
    if not result.decision.passed:
        return
    if CHAMPION in info.aliases:
        click.secho(f"version {info.version} is the champion (registry.require_approval is false)", fg="green")
    else:
        click.echo(
            f"next: review with `cvops models show {info.version}`, then "
            f"`cvops models promote {info.version}{reviewer_option}` (or reject)"
        )


def _student(student: "TrainingResult", teacher: str, experiment: str, reviewer_option: str) -> None:
    """The distilled student's run, after its teacher's; its gate decides nothing about the teacher's."""
    click.secho(f"\ndistilled student of version {teacher} ({student.trained.architecture})", bold=True)
    training(student, experiment, reviewer_option)
    if not student.decision.passed:
        click.secho(
            f"the student, version {student.version}, failed its gate: registered with its evidence, not a "
            f"challenger; version {teacher}'s run stands",
            fg="yellow",
        )


def monitoring(result: "MonitoringResult") -> None:
    verdict = result.verdict
    if verdict.columns:
        click.echo(verdict.table())
    click.secho(
        f"\n{verdict.status.replace('_', ' ').upper()}: {verdict.drift_reason}",
        fg=STATUS_COLOURS[verdict.status],
        bold=True,
    )
    click.echo(f"window: {verdict.rows} predictions ({verdict.model_rows} by champion version {verdict.model_version})")
    if (quality := verdict.quality) is not None:
        per_class = ", ".join(f"{c} {r:.2f}" for c, r in quality.class_recall.items())
        low = f": LOW, {quality.against_test}" if verdict.degraded else ""
        click.secho(f"{quality.line}{low}", fg="red" if low else None, bold=bool(low))
        if per_class:
            click.echo(f"  recall per class: {per_class}")
    if not verdict.champion_approved:
        from cvops.registry.model_registry import OUTSIDE_CVOPS

        click.secho(f"warning: champion version {verdict.model_version}: {OUTSIDE_CVOPS}", fg="yellow")
    if verdict.report_dir:
        click.echo(f"report: {verdict.report_dir}")
    decision = result.decision
    if decision is not None:
        outcome = f" ({decision.outcome})" if decision.outcome else ""
        click.echo(f"episode {decision.episode}: {decision.action}{outcome}")
    if result.training is not None:
        passed = "passed" if result.training.decision.passed else "failed"
        click.echo(f"retraining run {result.training.run_name}: version {result.training.version} ({passed} its gate)")


def versions(listed: "VersionList") -> None:
    """One line per version, newest first: a classifier's accuracy and macro-F1 (a detector's mAP@[.5:.95] and
    mAP@.5) as the torch model scored them, and what ships with its own score; then which model this is."""
    if not listed.versions:
        click.echo(f"{listed.model} has no versions yet: run `cvops run training`")
    else:
        detector = any("map" in row.metrics for row in listed.versions)
        first, second = ("map", "map_50") if detector else ("accuracy", "macro_f1")
        click.echo(
            f"{'version':>7}  {'aliases':<20} {first:>8} {second:>8}  {'ships':<9} {'shipped':>7}  {'gate':<6}  "
            f"{'approval':<8}  {'data':<8}  {'created (UTC)':<16}  notes"
        )
        for row in listed.versions:
            metric = [f"{row.metrics[k]:.4f}" if k in row.metrics else "—" for k in (first, second)]
            shipped = f"{row.ships_score:.4f}" if row.ships_score is not None else "—"
            line = (
                f"{row.version:>7}  {','.join(row.aliases):<20} {metric[0]:>8} {metric[1]:>8}  "
                f"{row.ships or '—':<9} {shipped:>7}  {row.gate:<6}  {row.approval:<8}  {row.data_version[:8]:<8}  "
                f"{row.created:%Y-%m-%d %H:%M}  {row.notes}"
            )
            click.secho(line, fg="yellow" if row.outside_cvops else None)
    others = (
        f"; other registered models: {', '.join(listed.other_models)} (`--model NAME`)" if listed.other_models else ""
    )
    click.echo(f"registered model: {listed.model}{others}")


def version(review: "VersionReview") -> None:
    """The evidence of one version: record, lineage, parameters, gate, artifact, comparison, slices."""
    info = review.info
    click.secho(f"{review.model_name} version {info.version}  [{', '.join(info.aliases) or 'no alias'}]", bold=True)
    click.echo(f"  {info.description}")
    click.echo(f"  gate {info.gate}, approval {info.approval}, created {info.created:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  {'mlflow_run:':<18} {info.run_id}")
    for key in SHOWN_TAGS:
        if info.tags.get(key):
            click.echo(f"  {key + ':':<18} {info.tags[key]}")
    if review.notes:
        click.secho(f"  note: {review.notes}", fg="yellow")
    click.secho("\nparameters that differ from the defaults", bold=True)
    for key, default, value in review.params:
        click.echo(f"  {key}: {value} (default: {default})")
    if not review.params:
        click.echo("  none: every parameter had its default")
    click.secho("\ngate", bold=True)
    click.echo(review.decision.table())
    _artifact_and_comparison(review)
    _errors(review)
    click.echo(f"\nmodel card: {info.tags.get('model_card', 'none')}")


def _artifact_and_comparison(review: "VersionReview") -> None:
    click.secho("\ndeployment artifact (ONNX)", bold=True)
    if review.quantization is None:
        click.echo(f"  not exported: `cvops quantize {review.info.version}`")
    else:
        click.echo("  " + review.quantization.summary().replace("\n", "\n  "))
        click.echo(f"  shipped file: {review.info.tags.get('onnx_shipped', '?')}")
    click.secho("\nchampion comparison (same test images)", bold=True)
    comparison = review.evaluation.champion
    click.echo(f"  {comparison.describe() if comparison else 'no champion when this version was evaluated'}")
    click.secho("\nslices", bold=True)
    for piece in review.evaluation.slices:
        scores = "  ".join(f"{name} {value:.4f}" for name, value in piece.scores.items())
        click.echo(f"  {piece.attribute + '=' + piece.value:<24} n={piece.n:<6} {scores}")


def _errors(review: "VersionReview") -> None:
    """The error gallery as a list of the images' paths and answers (the model card shows the pictures)."""
    from cvops.evaluation.reports import KIND_TITLES

    gallery = review.evaluation.gallery
    if not gallery.images:
        return
    click.secho("\nerrors (test images; pictures in the model card)", bold=True)
    for kind, title in KIND_TITLES.items():
        if chosen := gallery.of(kind):
            click.echo(f"  {title}:")
            for image in chosen:
                click.echo(f"    {image.path}  " + image.caption().replace("\n", ", "))


def reproduction(result: "Reproduction") -> None:
    """The original version and its rerun side by side, and whether the rerun reproduced it."""
    original_header = f"version {result.original.version} [95% interval]"
    click.echo(f"\n{'':<14} {original_header:>26} {'rerun ' + result.rerun.version:>14}")
    for name, original, rerun, verdict in result.rows():
        click.echo(f"{name:<14} {original:>26} {rerun:>14}  {verdict}")
    for note in result.notes:
        click.secho(f"note: {note}", fg="yellow")
    colour = "green" if result.reproduced else "red"
    click.secho(f"\n{result.verdict}", fg=colour, bold=True)
