"""`cvops quantize`, `cvops export` and `cvops package`: a registered version's deployment artifacts, made again,
for other runtimes, or packaged."""

from pathlib import Path

import click

from cvops.cli.app import main, project, registry
from cvops.config import TARGETS


@main.command()
@click.argument("version")
@click.option(
    "-S",
    "--set",
    "overrides",
    multiple=True,
    help="A quantize.* or measure.* parameter for this run only, e.g. -S quantize.calibration_size=128.",
)
def quantize(version: str, overrides: tuple[str, ...]) -> None:
    """Export VERSION to ONNX fp32 and int8, measure both here, record which one ships, and rebuild the
    version's monitoring reference with it. VERSION is a version number or an alias (champion, challenger,
    previous).

    What the pipeline's quantize_model, check_gate and build_reference steps do, for a version registered
    earlier or to try other quantize.* settings. The version's gate is decided again with the new shipped
    artifact.

    \b
    Examples:
      cvops quantize 3
      cvops quantize challenger
      cvops quantize 3 -S quantize.calibration_method=percentile
    """
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version
    from cvops.registry.versions import requantize

    checkout = project()
    versions = registry(checkout)
    version = versions.resolve(version).version
    params = checkout.params(list(overrides))
    dataset = load_dataset_ref(checkout.prepared_dir, data_version(checkout))
    result = requantize(versions, version, dataset, params, checkout.onnx_cache)
    click.echo(result.quantization.summary())
    click.echo(result.decision.table())
    if result.verdict_changed:
        click.secho(f"the gate verdict changed: {'passed' if result.decision.passed else 'failed'} now", fg="yellow")


@main.command()
@click.argument("version")
@click.option(
    "--format",
    "formats",
    type=click.Choice(TARGETS),
    multiple=True,
    required=True,
    help="A runtime to export for (repeat for several): onnx, openvino, litert, coreml.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the files go (default: exports/<model name>-v<VERSION>/).",
)
def export(version: str, formats: tuple[str, ...], output: Path | None) -> None:
    """Convert VERSION's shipped model for other runtimes, check each file on the test split against the torch
    model (accuracy or mAP, agreement) and time it beside the shipped ONNX file, here. VERSION is a version
    number or an alias (champion, challenger, previous).

    What the pipeline does with export.targets in params.yaml, for a version registered earlier. LiteRT needs
    onnx2tf in an environment of its own, named by CVOPS_ONNX2TF (`make litert` in cvops's clone) and the litert
    extra; Core ML needs the coreml extra, and is converted and its spec checked, not run: Core ML runs on Apple
    devices only.

    \b
    Examples:
      cvops export champion --format openvino
      cvops export 3 --format openvino --format coreml --output dist/
      CVOPS_ONNX2TF=~/cvops/.venv-litert/bin/onnx2tf cvops export 3 --format litert
    """
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version
    from cvops.registry.versions import export_version

    checkout = project()
    params = checkout.params()
    versions = registry(checkout, params)
    version = versions.resolve(version).version
    dataset = load_dataset_ref(checkout.prepared_dir, data_version(checkout))
    out_dir = output or checkout.root / "exports" / f"{versions.name}-v{version}"
    targets = [target for target in TARGETS if target in formats]
    measured = export_version(versions, version, dataset, params, targets, out_dir, checkout.onnx_cache)
    click.echo(f"{'target':<9} {'runtime':<26} {'size MB':>8} {'score':>7} {'agreement':>9} {'b1 ms':>7} {'b32 ms':>8}")
    for m in measured:
        numbers = [
            "-" if value is None else f"{value:.{digits}f}"
            for value, digits in ((m.score, 4), (m.agreement, 4), (m.latency_ms_b1, 2), (m.latency_ms_b32, 2))
        ]
        click.echo(
            f"{m.target:<9} {m.runtime:<26} {m.size_mb:>8.2f} {numbers[0]:>7} {numbers[1]:>9} {numbers[2]:>7} "
            f"{numbers[3]:>8}"
        )
        if m.note:
            click.echo(f"  {m.note}")
    click.secho(f"written in {out_dir} (with targets.json)", fg="green")


@main.command()
@click.argument("version")
def package(version: str) -> None:
    """Put VERSION's shipped ONNX model into BentoML's store and build a bento that serves it offline
    (with onnxruntime: the bento installs no torch). VERSION is a version number or an alias (champion,
    challenger, previous).

    \b
    Examples:
      cvops package 3
      cvops package champion
      bentoml containerize cvops-classifier:latest    # on a machine with a Docker engine (see infra/)
    """
    from cvops.serving.packaging import package_version

    checkout = project()
    params = checkout.params()
    versions = registry(checkout, params)
    version = versions.resolve(version).version
    model_tag, bento_tag, manifests = package_version(versions, version, checkout, params.registry.bento_name)
    click.secho(f"packaged version {version}: model {model_tag}, bento {bento_tag}", fg="green")
    click.echo(f"Kubernetes: `kubectl apply -k {manifests}` (Deployment, Service, HPA, PDB; see infra/README.md)")
    click.echo(
        f"serve it: BENTOML_HOME={checkout.bentoml_home} CVOPS_BENTO_MODEL={model_tag} bentoml serve {bento_tag}"
    )
