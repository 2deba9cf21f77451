"""`cvops feedback`, `cvops labels`, `cvops gc`: the production loop's commands, from true labels to new data,
and retention."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from cvops.cli.app import InputFile, Since, initialized_project, main, project, registry
from cvops.config import Project
from cvops.data.labels import STRATEGIES


@main.group()
def feedback() -> None:
    """True labels of served answers: live accuracy in `cvops run monitoring`."""


@feedback.command("import")
@click.argument("file", type=InputFile())
def feedback_import(file: Path) -> None:
    """Record the true labels in FILE, a CSV with the columns request_id,label (request ids from the
    service's answers, or the request_id column of a batch-inference output). A detector's true boxes: the
    columns request_id,label,x1,y1,x2,y2, a line per box in the pixels of the image sent (a request_id alone on
    its line: that image holds no object).

    Every line is checked first: an id no answer has, a label that is not a class of the data, or a box outside
    its image refuses the whole file (exit 14) and records nothing. A truth sent again replaces the earlier one.

    \b
    Examples:
      cvops feedback import labels.csv
      cvops traffic --source holdout --truth-out truth.csv && cvops feedback import truth.csv
      cvops feedback import boxes.csv     # a detector's: request_id,label,x1,y1,x2,y2
    """
    from cvops.data.prepare import load_dataset_ref
    from cvops.serving.feedback import give_box_feedback, give_feedback, read_boxes_csv, read_labels_csv
    from cvops.tasks import task

    checkout = project()
    params = checkout.params()
    text, log = file.read_text(encoding="utf-8"), checkout.inference_log(params.serve)
    classes = load_dataset_ref(checkout.prepared_dir).class_names
    if task(params.task).truth == "boxes":
        count = give_box_feedback(log, read_boxes_csv(text, str(file)), classes, "import")
        return click.secho(f"recorded the true boxes of {count} answers from {file}", fg="green")
    count = give_feedback(log, read_labels_csv(text, str(file)), classes, "import")
    click.secho(f"recorded {count} true labels from {file}", fg="green")


@main.group()
def labels() -> None:
    """Production images for people to label, and their labels into the data (a new data version)."""


@labels.command("queue")
@click.option("--n", "count", type=click.IntRange(min=1), default=100, show_default=True, help="Images in the batch.")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="mixed",
    show_default=True,
    help="uncertainty: least confident first; diverse: spread over the embedding space (k-center); "
    "random; mixed: 40% uncertain, 40% diverse, 20% random (an unbiased share); suspect: not captures but the "
    "data's own images whose label the data audit suspects, likeliest first.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="A new folder for the batch (default: labels/queue-<time>).",
)
def labels_queue(count: int, strategy: str, output: Path | None) -> None:
    """Pick captured images nobody has labelled yet and write a labelling batch: the images, tasks.csv
    (request_id, image, predicted, score), label_studio.json (the model's predictions as pre-annotations) and
    label_config.xml for Label Studio.

    With --strategy suspect the batch holds the data's own images whose label the data audit (`cvops data
    audit`, run again where the data changed) suspects: tasks.csv has path, image, given, suspected, quality, and
    Label Studio shows the given and the suspected label. `cvops labels import` of the reviewed labels
    (path,label[,labeller]) corrects them in a new data version; the images keep their split.

    \b
    Examples:
      cvops labels queue --n 50
      cvops labels queue --n 200 --strategy uncertainty --output labels/round-3
      cvops labels queue --n 20 --strategy suspect --output labels/suspects
    """
    from cvops.data.labels import queue_labels, queued_at

    checkout = project()
    params = checkout.params()
    out_dir = output or checkout.root / "labels" / f"queue-{queued_at()}"
    folder, chosen, waiting = queue_labels(checkout, params, count, strategy, out_dir)  # type: ignore[arg-type]
    queued = "images whose label the data audit suspects" if strategy == "suspect" else "unlabelled captured images"
    click.secho(f"queued {chosen} of {waiting} {queued} ({strategy}) -> {folder}", fg="green")
    click.echo(f"label them (in Label Studio: `cvops labels studio {folder}`), then `cvops labels import FILE`")


STUDIO_URL_HELP = "Label Studio's address (default: LABEL_STUDIO_URL, else http://localhost:8080)."


@labels.command("studio")
@click.argument("batch", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--url", help=STUDIO_URL_HELP)
@click.option("--title", help="The project's title (default: cvops and the batch's folder name).")
def labels_studio(batch: Path, url: str | None, title: str | None) -> None:
    """Create a Label Studio project for a `cvops labels queue` BATCH: its labelling config, a local-files
    storage over its images, and its tasks with the model's answers as pre-annotations. Prints the project's
    number and address; `cvops labels pull NUMBER` takes the labels back.

    The token is LABEL_STUDIO_API_KEY (a personal access token, or a legacy one). Label Studio serves the images
    from local files: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and the same
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, a folder above the batch, as `labels queue` ran with.

    \b
    Examples:
      export LABEL_STUDIO_API_KEY=...   # Label Studio: Account & Settings > Personal Access Token
      cvops labels studio labels/queue-20261201T101500Z
      cvops labels studio labels/round-3 --url http://labelling:8080 --title "round 3"
    """
    from cvops.data.studio import Studio, push_batch

    pushed = push_batch(Studio.connect(url), batch, title or f"cvops {batch.name}")
    click.secho(f"Label Studio project {pushed.project}: {pushed.tasks} tasks to label at {pushed.link}", fg="green")
    click.echo(f"when they are labelled: cvops labels pull {pushed.project}")


@labels.command("pull")
@click.argument("number", type=click.IntRange(min=1), metavar="PROJECT")
@click.option("--url", help=STUDIO_URL_HELP)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to keep the export (default: labels/studio-<PROJECT>-<time>.json).",
)
def labels_pull(number: int, url: str | None, output: Path | None) -> None:
    """Download the labels of Label Studio project PROJECT (its JSON export, labellers by email) and import
    them as `cvops labels import` does: a new data version.

    \b
    Examples:
      cvops labels pull 3
      cvops labels pull 3 --output labels/round-3.json
    """
    from cvops.data.labels import queued_at
    from cvops.data.studio import Studio, pull_export

    checkout = initialized_project()
    out = output or checkout.root / "labels" / f"studio-{number}-{queued_at()}.json"
    count = pull_export(Studio.connect(url), number, out)
    click.echo(f"exported {count} labelled tasks of project {number} -> {out}")
    _import_labels(checkout, out)


@labels.command("import")
@click.argument("file", type=InputFile())
def labels_import(file: Path) -> None:
    """Add labelled production images to the data: FILE is a CSV (request_id,label[,labeller]) or Label
    Studio's JSON export of a `cvops labels queue` batch. The reviews of a suspect batch (a CSV
    path,label[,labeller], or its export) correct the data's own labels instead: each recorded in
    data/production/corrections.csv with who, when and the label before, applied by the data stages (a new data
    version; every image keeps its split). A label kept is recorded too: the audit does not suspect it again.

    Every line is checked first: a request the service answered and captured, a label that is a class of
    the data, an image that passes validation; anything else refuses the file (exit 14, or 6 for an invalid
    image) and adds nothing. Images the data already holds are named and skipped. The rest go into
    data/production with their provenance (source=production, capture time, labeller), versioned with
    `dvc add`, and the data stages run again: a new data version (dvc.lock changes). Production images keep
    their split in every later version; their test images are the `recent` evaluation slice.

    \b
    Examples:
      cvops labels import labels/queue-20261201T101500Z/labelled.csv
      cvops labels import project-3-at-2026-12-01.json      # Label Studio export
      cvops labels import labels/suspects/reviewed.csv      # path,label: corrections
    """
    _import_labels(initialized_project(), file)


def _import_labels(checkout: Project, file: Path) -> None:
    from cvops.data.labels import import_labels

    result = import_labels(checkout, checkout.params(), file)
    if result.duplicates:
        shown = ", ".join(result.duplicates[:5]) + (" ..." if len(result.duplicates) > 5 else "")
        click.secho(f"skipped {len(result.duplicates)} images the data already holds: {shown}", fg="yellow")
    reviewed = result.corrected + result.confirmed
    if not (result.added or reviewed):
        click.echo("nothing new: the data version is unchanged")
        return
    done = (
        f"corrected {result.corrected} labels, kept {result.confirmed}"
        if reviewed
        else (f"added {result.added} labelled production images")
    )
    click.secho(
        f"{done}; data version {result.data_version[:12]} (stages run: {', '.join(result.stages) or 'none'})",
        fg="green",
    )
    message = "reviewed labels" if reviewed else "labelled production images"
    click.echo(
        f"commit the new data version: git add dvc.lock data/production.dvc && git commit -m '{message}' && "
        "cvops data push; retrain: cvops run training"
    )


@main.command()
@click.option(
    "--older-than",
    "cutoff",
    type=Since(),
    metavar="AGE|TIME",
    help="Delete what is older than this: an age (30d, 12h) or a time (default: serve.capture.retention_days).",
)
@click.option("--apply", is_flag=True, help="Delete. Without it, only list what would go (a dry run).")
def gc(cutoff: datetime | None, apply: bool) -> None:
    """Enforce retention: captured images, inference-log days (and their feedback), monitoring and
    live-comparison reports older than the cut-off; bentos and BentoML models of versions no alias
    (champion, challenger, previous) names; DVC cache objects no commit and not the workspace references
    (`dvc gc --workspace --all-commits`). A dry run unless --apply.

    \b
    Examples:
      cvops gc                          # what would go
      cvops gc --older-than 7d --apply
    """
    from cvops.stack.gc import ALIASES, collect

    checkout = initialized_project()
    params = checkout.params()
    versions = registry(checkout, params)
    aliased = {info.version for alias in ALIASES if (info := versions.alias(alias)) is not None}
    cutoff = cutoff or datetime.now(UTC) - timedelta(days=params.serve.capture.retention_days)
    click.echo(f"older than {cutoff:%Y-%m-%d %H:%M} UTC; keeping the bentos of versions {sorted(aliased) or 'none'}")
    found = collect(checkout, params, cutoff, aliased)
    for garbage in found:
        shown = "; ".join(garbage.items[:5]) + (
            f"; and {len(garbage.items) - 5} more" if len(garbage.items) > 5 else ""
        )
        click.echo(f"{garbage.kind}: {shown or 'nothing'}")
        if apply and garbage.items:
            garbage.delete()
    if apply:
        click.secho("deleted", fg="green")
    else:
        click.secho("dry run: nothing deleted (run again with --apply)", fg="yellow")
