"""A trained model on its way to a registered version: the ONNX export and its measurements, the monitoring
reference, the gate, and the registration with its model card. Each piece is computed and logged to the
active MLflow run, by the training pipeline's steps and, for a version registered earlier, by
`cvops quantize VERSION` (`requantize`)."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import mlflow
from pydantic import BaseModel, ConfigDict

from cvops.config import COREML_REFUSED, GateParams, Params, Target
from cvops.data.audit import DataAudit
from cvops.data.prepare import DatasetRef
from cvops.data.preprocess import model_inputs
from cvops.errors import ConfigError, DataError, ModelError
from cvops.evaluation.gate import GateDecision, decide
from cvops.evaluation.reports import (
    INT8,
    PRUNED,
    PRUNED_INT8,
    Evaluation,
    Format,
    QuantizationReport,
    TargetMeasurement,
    format_key,
)
from cvops.export.quantization import calibration_images, quantize
from cvops.export.targets import coremltools, export_targets, required_onnx2tf
from cvops.monitoring.reference import ReferenceSummary, build_reference
from cvops.registry.artifacts import forget, resolve
from cvops.registry.evidence import (
    load_audit,
    load_evidence,
    log_gate_decision,
    log_quantization,
    log_reference,
    quantization_tags,
    reference_tags,
)
from cvops.registry.lineage import LINEAGE_KEYS, TRAINING_KEYS
from cvops.registry.model_registry import DISTILLED_FROM_TAG, MODEL_CARD_TAG, ModelRegistry, VersionInfo
from cvops.registry.modelcard import ModelCard, Teacher, write_model_card
from cvops.registry.tracking import TrainedModel, load_trained_model, scratch_dir
from cvops.tasks import task
from cvops.tasks.detection.postprocess import PostProcess

DATA_COUNTS_TAG = "data_counts"  # a version's images per source and class (JSON): the model card's data growth

MODEL_CARD_DIR = "model_card"


def export_model(trained: TrainedModel, dataset: DatasetRef, params: Params) -> QuantizationReport:
    """ONNX fp32 (parity-checked) and static int8, with prune.enabled a pruned copy's too, all measured; the
    report names the artifact that ships."""
    report = quantize(load_trained_model(trained), dataset, scratch_dir(), params)
    log_quantization(report)
    return report


def monitoring_reference(
    quantization: QuantizationReport, dataset: DatasetRef, dims: int, post: PostProcess
) -> ReferenceSummary:
    """The shipped model's view of the training data, what monitoring compares served traffic against."""
    summary = build_reference(
        Path(quantization.shipped_artifact.path), dataset, scratch_dir() / "reference", dims, post
    )
    log_reference(summary)
    return summary


def gate(
    evaluation: Evaluation, quantization: QuantizationReport, params: GateParams, audit: DataAudit | None = None
) -> GateDecision:
    """Pass/fail on every gate check, logged pass or fail: never silent."""
    decision = decide(evaluation, params, quantization, audit)
    log_gate_decision(decision)
    return decision


def artifact_tags(quantization: QuantizationReport, reference: ReferenceSummary, artifact_uri: str) -> dict[str, str]:
    """Version tags that attach the ONNX files and the monitoring reference logged under `artifact_uri`."""
    return quantization_tags(quantization, artifact_uri) | reference_tags(artifact_uri, reference)


@dataclass
class Registration:
    """What `register_model` needs beside the registry: the evidence of the run."""

    trained: TrainedModel
    dataset: DatasetRef
    evaluation: Evaluation
    quantization: QuantizationReport
    decision: GateDecision
    reference: ReferenceSummary


class VersionOrigin(BaseModel):
    """Where a version comes from, beside its evidence: the data source its model card names, and the tags of
    what started its run (a drift episode, a distilled student's teacher)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_source: str
    trigger: dict[str, str] | None = None


def register(
    registry: ModelRegistry,
    evidence: Registration,
    require_approval: bool,
    data_source: str,
    trigger: dict[str, str] | None = None,
) -> str:
    """Register the version with its evidence, ONNX artifacts, lineage and model card: `challenger` and
    approval=pending when the gate passed (champion at once when registry.require_approval is false), no
    alias when it failed. `trigger` tags a drift-triggered retraining (episode, reason, report) and a distilled
    student (its teacher's version: the card compares the two)."""
    run = mlflow.get_run(evidence.trained.run_id)
    lineage = {k: v for k, v in run.data.tags.items() if k in LINEAGE_KEYS + TRAINING_KEYS}
    tags = lineage | artifact_tags(evidence.quantization, evidence.reference, run.info.artifact_uri)
    tags[DATA_COUNTS_TAG] = json.dumps(evidence.dataset.sources)
    if trigger:
        tags |= trigger
        mlflow.set_tags(trigger)
    version = registry.register(
        evidence.trained, evidence.evaluation.metrics, tags, evidence.decision, require_approval
    )
    card = ModelCard(
        model_name=registry.name,
        version=version,
        data_source=data_source,
        trained=evidence.trained,
        dataset=evidence.dataset,
        evaluation=evidence.evaluation,
        decision=evidence.decision,
        lineage=lineage,
        quantization=evidence.quantization,
        growth=data_growth(registry, evidence.dataset),
        teacher=teacher_of(registry, (trigger or {}).get(DISTILLED_FROM_TAG)),
        audit=load_audit(run.info.run_id),  # what the pipeline's audit step logged to the run
    )
    markdown, html = write_model_card(card, scratch_dir())
    mlflow.log_artifacts(str(markdown.parent), artifact_path=MODEL_CARD_DIR)
    registry.tag(version, {MODEL_CARD_TAG: f"{run.info.artifact_uri}/{MODEL_CARD_DIR}/{html.name}"})
    return version


def teacher_of(registry: ModelRegistry, version: str | None) -> Teacher | None:
    """A distilled student's teacher with its evidence (None for a version that is no student)."""
    if version is None:
        return None
    info = registry.get(version)
    evaluation, _, quantization = load_evidence(info.run_id)
    return Teacher(
        version=version,
        architecture=registry.trained_model(info).architecture,
        evaluation=evaluation,
        quantization=quantization,
    )


def data_growth(registry: ModelRegistry, dataset: DatasetRef) -> dict[str, dict[str, dict[str, int]]]:
    """Images per source and class of the data versions registered versions were trained on (the last five,
    oldest first), ending with `dataset`'s: how the data grew."""
    growth: dict[str, dict[str, dict[str, int]]] = {}
    for info in sorted(registry.versions(), key=lambda info: int(info.version)):
        if (counts := info.tags.get(DATA_COUNTS_TAG)) and info.tags.get("data_version"):
            growth.pop(info.tags["data_version"], None)
            growth[info.tags["data_version"]] = json.loads(counts)
    growth.pop(dataset.data_version, None)
    growth[dataset.data_version] = dataset.sources
    return dict(list(growth.items())[-5:])


@dataclass
class Requantized:
    quantization: QuantizationReport
    decision: GateDecision
    verdict_changed: bool


def requantize(
    registry: ModelRegistry, version: str, dataset: DatasetRef, params: Params, cache_dir: Path
) -> Requantized:
    """Export VERSION again (fp32 + int8, measured here), rebuild its monitoring reference with the file that
    now ships, decide its gate again, and record all of it on the version and its run."""
    info = _trained_on(registry, version, dataset)
    trained = registry.trained_model(info)
    evaluation, before, _ = load_evidence(info.run_id)
    with mlflow.start_run(run_id=info.run_id) as run:
        report = export_model(trained, dataset, params)
        reference = monitoring_reference(report, dataset, params.monitor.embedding_dims, params.detect.served)
        decision = gate(evaluation, report, params.gate, load_audit(info.run_id))
    tags = artifact_tags(report, reference, run.info.artifact_uri)
    registry.tag(version, tags)
    for stale in (format_key(fmt) for fmt in get_args(Format)):  # int8 or pruning switched off: no stale link
        if stale not in tags and stale in info.tags:
            registry.client.delete_model_version_tag(registry.name, version, stale)
    registry.record_gate(version, decision)
    forget(cache_dir, version)  # served and monitored from the new files from now on
    return Requantized(report, decision, before.passed != decision.passed)


def _trained_on(registry: ModelRegistry, version: str, dataset: DatasetRef) -> VersionInfo:
    """VERSION's registry entry, if the checkout holds the data it was trained on (its test split judges it)."""
    info = registry.get(version)
    if info.tags.get("data_version") and info.tags["data_version"] != dataset.data_version:
        raise DataError(
            f"version {version} was trained on data {info.tags['data_version'][:8]}, the checkout holds "
            f"{dataset.data_version[:8] or 'unversioned data'}: check out its commit and run `dvc checkout` first"
        )
    return info


def export_version(
    registry: ModelRegistry,
    version: str,
    dataset: DatasetRef,
    params: Params,
    targets: list[Target],
    out_dir: Path,
    cache_dir: Path,
) -> list[TargetMeasurement]:
    """VERSION's shipped model for each of `targets` in `out_dir` (with `targets.json`), checked on the test split
    and timed beside the shipped ONNX file here, as the pipeline's export.targets are."""
    info = _trained_on(registry, version, dataset)
    _, _, report = load_evidence(info.run_id)
    if report is None:
        raise ModelError(f"version {version} has no ONNX artifact: run `cvops quantize {version}` first")
    if "litert" in targets:
        required_onnx2tf()  # before anything is written
    if "coreml" in targets:
        coremltools()
    if "coreml" in targets and not task(dataset.task).coreml:
        raise ConfigError(f"--format {COREML_REFUSED.format(task=dataset.task)}")
    if "coreml" in targets and report.shipped in (PRUNED, PRUNED_INT8):
        raise ConfigError(
            f"version {version} ships its pruned model ({report.shipped}), whose torch model is not kept: set "
            "export.targets: [coreml] in params.yaml and run `cvops quantize V`, which converts it while it has it"
        )
    served = resolve(registry, version, cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped = report.shipped_artifact.model_copy(update={"path": served.onnx_path})
    if "onnx" in targets:
        copied = out_dir / "model.onnx"
        shutil.copyfile(served.onnx_path, copied)
        shipped = shipped.model_copy(update={"path": str(copied)})
    float_file = shipped  # litert is made from the fp32 file of the shipped model: fetched when int8 ships
    made_from = report.pruned if report.shipped == PRUNED_INT8 else report.fp32
    if "litert" in targets and report.shipped in (INT8, PRUNED_INT8) and made_from is not None:
        uri, folder = info.tags[format_key(made_from.format)], cache_dir / version / "float"
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder))
        float_file = made_from.model_copy(update={"path": local})
    model = load_trained_model(registry.trained_model(info))
    check = task(dataset.task).export.export_check(model, dataset)
    calibration = None  # litert is int8 when int8 ships, calibrated on the int8 file's images (when recorded)
    if "litert" in targets and report.shipped in (INT8, PRUNED_INT8) and report.calibration_ids:
        pre = check.preprocessing
        calibration = model_inputs(calibration_images(dataset, report.calibration_ids), pre.mean, pre.std)
    measured = export_targets(targets, check, shipped, float_file, model, out_dir, params, calibration)
    (out_dir / "targets.json").write_text(json.dumps([m.model_dump() for m in measured], indent=2) + "\n")
    return measured
