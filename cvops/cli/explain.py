"""`cvops explain`: where a registered classifier looks in any images (Grad-CAM overlays)."""

from pathlib import Path

import click

from cvops.cli.app import main, project, registry


@main.command()
@click.argument("version")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("explanations"),
    show_default=True,
    help="Folder for the overlays (<image name>.gradcam.png).",
)
def explain(version: str, images: tuple[Path, ...], output: Path) -> None:
    """Draw where VERSION looks in each of IMAGES: Grad-CAM heat for the class it predicts (red: the evidence
    for its answer), over the image at the image's size. VERSION is a version number or an alias (champion,
    challenger, previous).

    The model card's Saliency section shows the same for the test images in its error gallery.

    \b
    Examples:
      cvops explain 3 cell_0042.png cell_0043.png
      cvops explain champion --output review/ data/raw/defective/*.png
    """
    from cvops.evaluation.saliency import explain_files
    from cvops.registry.tracking import load_trained_model
    from cvops.training.models import resolve_device

    checkout = project()
    models = registry(checkout)
    trained = models.trained_model(models.resolve(version))
    device = resolve_device(checkout.params().base.device)
    for found in explain_files(load_trained_model(trained), trained, list(images), output, device):
        click.echo(f"{found.image}: {found.label} ({found.score:.2f}) -> {found.overlay}")
