"""What a reviewer reads about a registered version: its record, evidence, lineage and parameters.

Light (MLflow and pydantic only), so the review commands answer in about the time MLflow takes to import.
"""

from dataclasses import dataclass, field
from typing import Any

from cvops.config import Params, flatten
from cvops.errors import RegistryError
from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import Evaluation, QuantizationReport
from cvops.registry.evidence import load_evidence
from cvops.registry.lineage import run_params
from cvops.registry.model_registry import CHALLENGER, DISTILLED_FROM_TAG, OUTSIDE_CVOPS, ModelRegistry, VersionInfo


def version_notes(registry: ModelRegistry, info: VersionInfo) -> str:
    """What the record says besides the gate and approval: overrides, rollbacks, retraining triggers."""
    notes = []
    if registry.outside_cvops(info):
        notes.append(OUTSIDE_CVOPS)
    if info.tags.get("gate_override") == "true":
        notes.append("gate overridden")
    if "rolled_back_by" in info.tags:
        notes.append(f"rolled back by {info.tags['rolled_back_by']}")
    if DISTILLED_FROM_TAG in info.tags:
        notes.append(f"distilled from v{info.tags[DISTILLED_FROM_TAG]}")
    if "retrain_trigger" in info.tags:
        notes.append(f"retrained on drift {info.tags['retrain_trigger']}")
    if "reproduced_at" in info.tags:
        notes.append(f"reproduced {info.tags['reproduced_at'][:10]}: {info.tags.get('reproduce_verdict', '?')}")
    return "; ".join(notes)


def changed_params(values: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, default, value) for each parameter of a run that differs from cvops's defaults (config.py)."""
    defaults = flatten(Params().as_params())
    missing = "(not a parameter now)"
    return [(key, defaults.get(key, missing), value) for key, value in values.items() if defaults.get(key) != value]


@dataclass
class VersionReview:
    """Everything `cvops models show` prints about one version."""

    model_name: str
    info: VersionInfo
    notes: str
    evaluation: Evaluation
    decision: GateDecision
    quantization: QuantizationReport | None
    params: list[tuple[str, Any, Any]] = field(default_factory=list)


def review_version(registry: ModelRegistry, version: str) -> VersionReview:
    info = registry.get(version)
    evaluation, decision, quantization = load_evidence(info.run_id)
    return VersionReview(
        registry.name,
        info,
        version_notes(registry, info),
        evaluation,
        decision,
        quantization,
        changed_params(run_params(info.run_id)),
    )


def review_challenger(registry: ModelRegistry) -> VersionReview:
    """The evidence of the version waiting for a reviewer."""
    challenger = registry.alias(CHALLENGER)
    if challenger is None:
        raise RegistryError(f"{registry.name} has no challenger waiting for review; `cvops models list` shows all")
    return review_version(registry, challenger.version)
