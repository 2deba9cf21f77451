"""The review evidence of a run: its evaluation and gate decision, as MLflow run artifacts."""

from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from cvops.data.audit import DataAudit
from cvops.data.audit_report import AUDIT_HTML, AUDIT_JSON
from cvops.errors import RegistryError
from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import Evaluation, QuantizationReport, TargetMeasurement, format_key
from cvops.registry.model_registry import REFERENCE_TAG, SHIPPED_FORMAT_TAG, SHIPPED_SCORE_TAG, SHIPPED_TAG

if TYPE_CHECKING:
    from cvops.monitoring.reference import ReferenceSummary

EVALUATION_FILE = "evaluation/evaluation.json"
QUANTIZATION_DIR = "onnx"
QUANTIZATION_FILE = f"{QUANTIZATION_DIR}/quantization.json"
REFERENCE_DIR = "reference"
TARGETS_DIR = "targets"  # export.targets' files, a folder per target
GATE_FILE = "gate/gate.json"
AUDIT_DIR = "audit"
GATE_TABLE_FILE = "gate/gate.txt"
TRACKING_DATA_TAG = "tracking_data"  # the run tag naming a detector's tracking videos' version


def log_evaluation(evaluation: Evaluation) -> None:
    """Metrics under `test_*` names, the confusion matrix (a detector's drawn examples), the error gallery's
    sheets (and their Grad-CAM overlays), the tracking videos' version, and the whole evaluation, on the active
    run."""
    mlflow.log_metrics({f"test_{name}": value for name, value in evaluation.flat_metrics().items()})
    if evaluation.tracking_data:
        mlflow.set_tag(TRACKING_DATA_TAG, evaluation.tracking_data)
    for picture in evaluation.pictures():
        mlflow.log_artifact(picture, artifact_path="evaluation")
    mlflow.log_text(evaluation.model_dump_json(indent=2), EVALUATION_FILE)


def log_quantization(report: QuantizationReport) -> None:
    """Every ONNX file, the calibration image ids and the report; metrics for comparing runs (and a pruned model's
    parameters and multiply-accumulates, before and after)."""
    for artifact in report.candidates():
        mlflow.log_artifact(artifact.path, artifact_path=QUANTIZATION_DIR)
        name = format_key(artifact.format)
        mlflow.log_metrics(
            {
                f"{name}_{k}": getattr(artifact, k)
                for k in ("accuracy", "mean_ap", "agreement", "size_mb", "latency_ms_b1", "latency_ms_b32")
                if getattr(artifact, k) is not None
            }
        )
    for target in report.targets:
        _log_target(target)
    mlflow.log_text(report.model_dump_json(indent=2), QUANTIZATION_FILE)
    mlflow.log_metric("onnx_parity_max_abs_diff", report.parity_max_abs_diff)
    if report.pruning is not None:
        counts = report.pruning.model_dump(exclude={"ratio", "fine_tune_epochs"})
        mlflow.log_metrics({f"pruned_{k}": float(v) for k, v in counts.items()})
    mlflow.set_tag(SHIPPED_FORMAT_TAG, report.shipped)


def _log_target(target: TargetMeasurement) -> None:
    """An export target's files under targets/<target>/ (the shipped ONNX file is logged already) and its
    numbers as target_<target>_* metrics."""
    path = Path(target.path)
    if target.target != "onnx":
        where = f"{TARGETS_DIR}/{target.target}"
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"{where}/{path.name}")
        else:
            for part in (path, path.with_suffix(".bin")):
                if part.is_file():
                    mlflow.log_artifact(str(part), artifact_path=where)
    numbers = ("accuracy", "mean_ap", "agreement", "size_mb", "latency_ms_b1", "latency_ms_b32")
    values = {f"target_{target.target}_{k}": getattr(target, k) for k in numbers}
    mlflow.log_metrics({k: v for k, v in values.items() if v is not None})


def quantization_tags(report: QuantizationReport, artifact_uri: str) -> dict[str, str]:
    """Model-version tags that attach the ONNX artifacts (MLflow URIs) and name the one that ships."""
    tags = {SHIPPED_FORMAT_TAG: report.shipped, SHIPPED_SCORE_TAG: f"{report.shipped_artifact.score:.4f}"}
    for artifact in report.candidates():
        tags[format_key(artifact.format)] = f"{artifact_uri}/{QUANTIZATION_DIR}/{Path(artifact.path).name}"
    tags[SHIPPED_TAG] = tags[format_key(report.shipped)]
    return tags


def log_reference(summary: "ReferenceSummary") -> None:
    """The monitoring reference folder (table, projection, summary) on the active run."""
    mlflow.log_artifacts(summary.directory, artifact_path=REFERENCE_DIR)
    mlflow.log_metrics(
        {
            "reference_rows": summary.rows,
            "reference_model_rows": summary.model_rows,
            "reference_explained_variance": summary.explained_variance,
        }
    )


def reference_tags(artifact_uri: str, summary: "ReferenceSummary") -> dict[str, str]:
    return {REFERENCE_TAG: f"{artifact_uri}/{REFERENCE_DIR}", "reference_rows": str(summary.rows)}


def log_gate_decision(decision: GateDecision) -> None:
    mlflow.log_dict(decision.model_dump(mode="json"), GATE_FILE)
    mlflow.log_text(decision.table(), GATE_TABLE_FILE)
    mlflow.log_metric("gate_passed", float(decision.passed))
    mlflow.set_tag("gate", "passed" if decision.passed else "failed")


def load_evidence(run_id: str) -> tuple[Evaluation, GateDecision, QuantizationReport | None]:
    try:
        evaluation = Evaluation.model_validate_json(mlflow.artifacts.load_text(f"runs:/{run_id}/{EVALUATION_FILE}"))
        decision = GateDecision.model_validate(mlflow.artifacts.load_dict(f"runs:/{run_id}/{GATE_FILE}"))
    except (MlflowException, OSError) as err:
        raise RegistryError(
            f"run {run_id} holds no cvops evaluation/gate evidence ({type(err).__name__}); "
            "was it registered outside `cvops run training`?"
        ) from err
    except ValidationError as err:
        raise RegistryError(
            f"run {run_id} holds evidence in another cvops format ({err.error_count()} fields differ); "
            "re-run `cvops run training` to register a version with current evidence"
        ) from err
    try:
        quantization = QuantizationReport.model_validate_json(
            mlflow.artifacts.load_text(f"runs:/{run_id}/{QUANTIZATION_FILE}")
        )
    except (MlflowException, OSError, ValidationError):
        quantization = None  # not exported yet: `cvops quantize V`
    return evaluation, decision, quantization


def log_audit(audit: DataAudit, reports_dir: Path) -> None:
    """The data audit's counts as metrics, its reports (reports_dir's audit.json and audit.html) as artifacts."""
    if not audit.enabled:
        return
    mlflow.log_metrics(audit.metrics())
    for name in (AUDIT_JSON, AUDIT_HTML):
        mlflow.log_artifact(str(reports_dir / name), artifact_path=AUDIT_DIR)


def load_audit(run_id: str) -> DataAudit | None:
    """The data audit a run logged (None: it ran with the audit off, or before cvops had one)."""
    try:
        return DataAudit.model_validate_json(mlflow.artifacts.load_text(f"runs:/{run_id}/{AUDIT_DIR}/{AUDIT_JSON}"))
    except (MlflowException, OSError, ValidationError):
        return None
