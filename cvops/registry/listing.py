"""What `cvops models list --json` and `cvops models show --json` print (schemas: cvops/cli/shapes.py)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from cvops.evaluation.gate import GateDecision
from cvops.evaluation.reports import OnnxMeasurement
from cvops.registry.model_registry import (
    HEADLINE_METRICS,
    SHIPPED_FORMAT_TAG,
    SHIPPED_SCORE_TAG,
    ModelRegistry,
    VersionInfo,
)
from cvops.registry.review import VersionReview, version_notes


class VersionRow(BaseModel):
    """One version as `cvops models list` shows it."""

    version: str
    aliases: list[str]
    gate: str  # passed | failed | none
    approval: str  # pending | approved | rejected | — (none)
    metrics: dict[str, float]  # the headline test metrics it was registered with (accuracy, macro_f1; map, map_50)
    ships: str | None  # the artifact that ships (onnx-fp32, onnx-int8); None before an export
    ships_score: float | None  # its test score: accuracy, or mAP for a detector (None: registered before it was kept)
    data_version: str
    created: datetime
    notes: str
    outside_cvops: bool  # made champion outside cvops (no approval record)

    @classmethod
    def of(cls, registry: ModelRegistry, info: VersionInfo) -> "VersionRow":
        tags = info.tags
        return cls(
            version=info.version,
            aliases=info.aliases,
            gate=info.gate,
            approval=info.approval,
            metrics={key: float(tags[key]) for key in HEADLINE_METRICS if key in tags},
            ships=tags.get(SHIPPED_FORMAT_TAG),
            ships_score=float(tags[SHIPPED_SCORE_TAG]) if SHIPPED_SCORE_TAG in tags else None,
            data_version=tags.get("data_version", ""),
            created=info.created,
            notes=version_notes(registry, info),
            outside_cvops=registry.outside_cvops(info),
        )


class VersionList(BaseModel):
    """`cvops models list --json`: the registered model and its versions, newest first."""

    model: str
    versions: list[VersionRow]
    other_models: list[str]  # the store's other registered models (`--model NAME` lists one)

    @classmethod
    def of(cls, registry: ModelRegistry) -> "VersionList":
        others = sorted(m.name for m in registry.client.search_registered_models() if m.name != registry.name)
        rows = [VersionRow.of(registry, info) for info in registry.versions()]
        return cls(model=registry.name, versions=rows, other_models=others)


class ParamChange(BaseModel):
    key: str
    default: Any
    value: Any


class VersionDetail(BaseModel):
    """`cvops models show --json`: a version's record and evidence."""

    model: str
    version: VersionRow
    run_id: str
    description: str
    tags: dict[str, str]  # every tag of the version: lineage, approval record, artifacts
    params: list[ParamChange]  # the training parameters that differ from cvops's defaults
    test_metrics: dict[str, float]
    gate: GateDecision
    shipped: OnnxMeasurement | None  # the shipped artifact's measurement (quality, size, latency)

    @classmethod
    def of(cls, registry: ModelRegistry, review: VersionReview) -> "VersionDetail":
        info = review.info
        return cls(
            model=review.model_name,
            version=VersionRow.of(registry, info),
            run_id=info.run_id,
            description=info.description,
            tags=info.tags,
            params=[ParamChange(key=key, default=default, value=value) for key, default, value in review.params],
            test_metrics=review.evaluation.metrics,
            gate=review.decision,
            shipped=review.quantization.shipped_artifact if review.quantization else None,
        )
