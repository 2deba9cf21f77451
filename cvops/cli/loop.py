"""`cvops feedback ...`: the production loop's commands, from true labels to new data."""

from pathlib import Path

import click

from cvops.cli.app import main, project


@main.group()
def feedback() -> None:
    """True labels of served answers: live accuracy in `cvops run monitoring`."""


@feedback.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def feedback_import(file: Path) -> None:
    """Record the true labels in FILE, a CSV with the columns request_id,label (request ids from the
    service's answers, or the request_id column of a batch-inference output).

    Every line is checked first: an id no answer has, or a label that is not a class of the data, refuses the
    whole file (exit 14) and records nothing. A label sent again replaces the earlier one.

    \b
    Examples:
      cvops feedback import labels.csv
      cvops traffic --source holdout --truth-out truth.csv && cvops feedback import truth.csv
    """
    from cvops.data.prepare import load_dataset_ref
    from cvops.feedback import give_feedback, read_labels_csv

    checkout = project()
    params = checkout.params()
    labels = read_labels_csv(file.read_text(encoding="utf-8"), str(file))
    classes = load_dataset_ref(checkout.prepared_dir).class_names
    count = give_feedback(checkout.inference_log(params.serve), labels, classes, "import")
    click.secho(f"recorded {count} true labels from {file}", fg="green")
