"""`cvops init` and `cvops data ...`: the checkout's state and the DVC data stages."""

from pathlib import Path
from typing import Any

import click

from cvops.cli import render
from cvops.cli.app import JSON_HELP, main, project
from cvops.config import SOURCES, is_reference
from cvops.errors import DataInvalidError
from cvops.tasks import DEFAULT_TASK, task_names


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--task",
    type=click.Choice(task_names()),
    default=DEFAULT_TASK,
    show_default=True,
    help="What the project's models do.",
)
def new(directory: Path, task: str) -> None:
    """Create a cvops project in DIRECTORY (new, or an empty folder): a commented params.yaml, dvc.yaml,
    .gitignore, overlays/ and a README naming the next commands, with `git init` and `dvc init` done.

    \b
    Examples:
      cvops new shelf-inspection
      cvops new parts --task detection && cd parts && cvops init
    """
    from cvops.stack.scaffold import create_project

    for line in create_project(directory, task):
        click.echo(f"  {line}")
    click.secho(f"ready: next, `cd {directory}`, `cvops init`, then import your images (README.md)", fg="green")


@main.command()
@click.option(
    "--stack",
    "stack",
    type=click.Choice(["local", "team"]),
    default="local",
    show_default=True,
    help="local: SQLite stores and folders in the checkout; team: the servers named in the environment.",
)
def init(stack: str) -> None:
    """Create the checkout's state: ZenML repo and stack, MLflow store, DVC remote. Safe to re-run.

    With --stack team, the ZenML stack is registered on the team's ZenML server (S3 artifact store, MLflow
    tracker and registry on the team's MLflow server, credentials held as ZenML secrets) and DVC's remote is
    the team's S3 bucket; the servers come from the environment (`.team/env` after `cvops team up`).

    \b
    Examples:
      cvops init
      cvops team up && . .team/env && cvops init --stack team
    """
    from cvops.stack.checkout import init_project

    checkout = project()
    for line in init_project(checkout, checkout.params(), stack):  # type: ignore[arg-type]
        click.echo(f"  {line}")
    click.secho("ready: next, `cvops data import elpv` (or digits; digit-scenes for detection)", fg="green")


class SourceChoice(click.Choice):
    """A built-in source's name, or the user's reader, `package.module:function`."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value if isinstance(value, str) and is_reference(value) else super().convert(value, param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "[" + "|".join(map(str, self.choices)) + "|package.module:function]"


@main.group()
def data() -> None:
    """Import, validate, prepare and version image datasets (the DVC stages)."""


@data.command("import")
@click.argument("source", required=False, type=SourceChoice(SOURCES))
@click.option("--path", type=click.Path(path_type=Path), help="Input folder (folder, fashion-mnist, coco, yolo, voc).")
@click.option(
    "--annotations",
    type=click.Path(path_type=Path),
    help="coco: the annotation JSON (default: PATH/annotations.json); voc: the XML folder (default: PATH/Annotations).",
)
@click.option(
    "--limit-per-class", type=click.IntRange(min=1), help="Import at most N images per class (classification)."
)
@click.option("--direct", is_flag=True, help="Import now, outside DVC (what the DVC `import` stage runs).")
def import_(
    source: str | None, path: Path | None, annotations: Path | None, limit_per_class: int | None, direct: bool
) -> None:
    """Import SOURCE into data/raw (the DVC `import` stage): a classification source as data/raw/<class>/
    with a manifest; a detection source (coco, yolo, voc, digit-scenes) as data/raw/images/ with a manifest of
    images and a table of boxes (image, label, x1, y1, x2, y2 in pixels).

    SOURCE, --path, --annotations and --limit-per-class are written into params.yaml (data.*), with the task
    the source serves (`task: detection` for coco, yolo, voc and digit-scenes), so DVC and the pipeline import the
    same thing; without them, params.yaml decides. The user's files are imported as they are (not
    re-encoded) and class names kept exactly; validation then judges each file and each box.

    \b
    Examples:
      cvops data import elpv
      cvops data import digits --limit-per-class 50
      cvops data import folder --path ~/images     # ~/images/<class>/<image>
      cvops data import coco --path ~/shelf --annotations ~/shelf/instances.json
      cvops data import yolo --path ~/line         # ~/line/images/..., ~/line/labels/..., ~/line/data.yaml
      cvops data import voc --path ~/cvat-export   # Annotations/*.xml + JPEGImages/ (CVAT, LabelImg)
      cvops data import digit-scenes               # composed from real MNIST digits, no download
      cvops data import shelf.reader:samples --path data/incoming   # your own reader (docs: Your own images)
    """
    if direct:
        from cvops.data.importer import import_configured

        checkout = project()
        manifest = import_configured(checkout)
        if "label" in manifest:
            counts = manifest["label"].value_counts().sort_index().items()
            click.secho(
                f"imported {len(manifest)} images into {checkout.raw_dir} "
                f"({', '.join(f'{label}: {n}' for label, n in counts)})",
                fg="green",
            )
        else:
            click.secho(
                f"imported {len(manifest)} images with {int(manifest['boxes'].sum())} boxes into {checkout.raw_dir}",
                fg="green",
            )
        return
    from cvops.data.versioning import import_data

    render.changed_params(import_data(project(), source, path, limit_per_class, annotations))


@data.command("validate")
def validate() -> None:
    """Check data/raw with the great-expectations suite and image checks (the DVC `validate` stage).

    Writes reports/validation.json and reports/validation.html. On failure prints each failed check
    with its files and exits 6 ("data invalid"); with validate.on_error=quarantine, bad files move to
    data/validated/quarantine and the rest must pass on its own.

    \b
    Example:
      cvops data validate && open reports/validation.html
    """
    from cvops.data.validation import validate_configured

    report, html_report = validate_configured(project())
    render.validation(report)
    if not report.passed:
        raise DataInvalidError(f"data invalid: {len(report.failed_checks)} checks failed (report: {html_report})")


@data.command("prepare")
def prepare() -> None:
    """Split (seeded, stratified) and resize the validated images into data/prepared (the DVC `prepare` stage).

    `cvops run training` runs it when its inputs changed (DVC decides); run it alone to look at the splits.

    \b
    Examples:
      cvops data prepare
      cvops data prepare && cvops data status    # the split sizes, and whether dvc.lock matches
    """
    from cvops.data.prepare import prepare_configured

    ref = prepare_configured(project())
    sizes = ", ".join(f"{split}: {sum(c.values())}" for split, c in ref.counts.items())
    click.secho(f"prepared {sizes} {ref.unit} at {ref.image_size}px in {ref.prepared_dir}", fg="green")


@data.command("audit")
@click.option("-S", "--set", "overrides", multiple=True, help="An audit.* parameter for this run only (repeatable).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def audit(overrides: tuple[str, ...], as_json: bool) -> None:
    """Look for likely label errors, near-duplicates, test images leaked into train and outliers in the prepared
    data (prepared first through DVC, where stale); `cvops run training` runs the same audit before training.

    Writes reports/audit.json (every finding) and reports/audit.html (with thumbnails). It runs even with
    audit.enabled false; audit.* sets its thresholds and time budget, and gate.max_leakage how many leaked
    test images the gate lets a model pass with.

    \b
    Examples:
      cvops data audit && open reports/audit.html
      cvops data audit --json | jq '.label_issues[:5]'
      cvops data audit -S audit.time_budget_s=600    # rank every image's label on a big dataset
    """
    from cvops.data.audit_report import audit_project
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version, reproduce

    found = project()
    reproduce(found, "prepare")
    params = found.params([*overrides, "audit.enabled=true"])
    result, html_report = audit_project(found, load_dataset_ref(found.prepared_dir, data_version(found)), params)
    if as_json:
        return click.echo(result.model_dump_json(indent=2))
    render.audit(result, html_report, params.gate.max_leakage)


@data.command("status")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def status(as_json: bool) -> None:
    """Data version, images per class and split, and whether the workspace matches dvc.lock.

    \b
    Examples:
      cvops data status
      cvops data status --json | jq '.counts.test'
    """
    from cvops.data.versioning import data_status

    found = data_status(project())
    if as_json:
        return click.echo(found.model_dump_json(indent=2))
    render.data_status(found)


@data.command("push")
def push() -> None:
    """Upload the DVC-tracked data to the remote (params data.remote).

    \b
    Examples:
      cvops data push                              # to data.remote: a folder, or s3://bucket/path
      cvops data push && git push                  # the data and the dvc.lock that names it, together
    """
    from cvops.data.versioning import push as dvc_push

    click.secho(f"pushed {dvc_push(project())} objects", fg="green")


@data.command("pull")
def pull() -> None:
    """Restore the data that dvc.lock names from the remote (params data.remote).

    \b
    Examples:
      cvops data pull                              # in a fresh clone: the data this commit trained on
      git checkout v1.2 -- dvc.lock && cvops data pull   # an older data version
    """
    from cvops.data.versioning import pull as dvc_pull

    result = dvc_pull(project())
    click.secho(f"pulled: {result.get('stats', result)}", fg="green")
