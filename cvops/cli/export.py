"""`cvops quantize` and `cvops package`: a registered version's deployment artifacts, made again or packaged."""

import click

from cvops.cli.app import main, project, registry


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
