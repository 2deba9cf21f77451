"""`cvops quantize` and `cvops package`: a registered version's deployment artifacts, made again or packaged."""

import click

from cvops.cli.app import main, project, registry, set_params


@main.command()
@click.option("--version", "version", required=True, help="Registered model version to export and quantize.")
@click.option(
    "-S",
    "--set",
    "overrides",
    multiple=True,
    help="Set a quantize.* or measure.* parameter in params.yaml, e.g. -S quantize.calibration_size=128.",
)
def quantize(version: str, overrides: tuple[str, ...]) -> None:
    """Export VERSION to ONNX fp32 and int8, measure both here, record which one ships, and rebuild the
    version's monitoring reference with it.

    What the pipeline's quantize_model, check_gate and build_reference steps do, for a version registered
    earlier or to try other quantize.* settings. The version's gate is decided again with the new shipped
    artifact.

    \b
    Examples:
      cvops quantize --version 3
      cvops quantize --version 3 -S quantize.calibration_method=percentile
    """
    from cvops.data.prepare import load_dataset_ref
    from cvops.data.versioning import data_version
    from cvops.registry.versions import requantize

    checkout = project()
    params = set_params(checkout, list(overrides))
    dataset = load_dataset_ref(checkout.prepared_dir, data_version(checkout))
    result = requantize(registry(checkout, params), version, dataset, params, checkout.onnx_cache)
    click.echo(result.quantization.summary())
    click.echo(result.decision.table())
    if result.verdict_changed:
        click.secho(f"the gate verdict changed: {'passed' if result.decision.passed else 'failed'} now", fg="yellow")


@main.command()
@click.option("--version", "version", required=True, help="Registered model version to package.")
def package(version: str) -> None:
    """Put VERSION's shipped ONNX model into BentoML's store and build a bento that serves it offline
    (with onnxruntime: the bento installs no torch).

    \b
    Examples:
      cvops package --version 3
      bentoml containerize cvops-classifier:latest    # on a machine with a Docker engine (see infra/)
    """
    from cvops.serving.packaging import package_version

    checkout = project()
    params = checkout.params()
    model_tag, bento_tag, manifests = package_version(
        registry(checkout, params), version, checkout.onnx_cache, params.registry.bento_name, checkout.manifests_dir
    )
    click.secho(f"packaged version {version}: model {model_tag}, bento {bento_tag}", fg="green")
    click.echo(f"Kubernetes: `kubectl apply -k {manifests}` (Deployment, Service, HPA, PDB; see infra/README.md)")
    click.echo(
        f"serve it: BENTOML_HOME={checkout.bentoml_home} CVOPS_BENTO_MODEL={model_tag} bentoml serve {bento_tag}"
    )
