"""The promotion gate: every check a model must pass to become the challenger, with its evidence."""

from typing import Literal

from pydantic import BaseModel, computed_field

from cvops.config import GateParams
from cvops.data.audit import DataAudit
from cvops.evaluation.reports import ChampionComparison, Evaluation, QuantizationReport
from cvops.tasks import ReportPart, task

Verdict = Literal["pass", "fail", "skip"]


class GateCheck(BaseModel):
    name: str
    value: float | None
    rule: Literal[">=", "<="]
    threshold: float
    verdict: Verdict
    note: str = ""


class GateDecision(BaseModel):
    """Every check with its value, threshold and verdict; the model passes when none fails."""

    checks: list[GateCheck]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[GateCheck]:
        return [check for check in self.checks if check.verdict == "fail"]

    def table(self) -> str:
        """A fixed-width table for the terminal and the model card."""
        width = max(len(check.name) for check in self.checks)
        lines = [f"{'check':<{width}}  {'value':>9}  rule  {'threshold':>9}  verdict"]
        for check in self.checks:
            value = "—" if check.value is None else f"{check.value:.4g}"
            note = f"  ({check.note})" if check.note else ""
            lines.append(
                f"{check.name:<{width}}  {value:>9}  {check.rule:^4}  {check.threshold:>9.4g}  "
                f"{check.verdict.upper()}{note}"
            )
        lines.append(f"gate: {'PASSED' if self.passed else f'FAILED ({len(self.failed)} checks)'}")
        return "\n".join(lines)


def check(name: str, value: float | None, rule: Literal[">=", "<="], threshold: float, note: str = "") -> GateCheck:
    if value is None:
        return GateCheck(name=name, value=None, rule=rule, threshold=threshold, verdict="skip", note=note)
    ok = value >= threshold if rule == ">=" else value <= threshold
    verdict: Verdict = "pass" if ok else "fail"
    return GateCheck(name=name, value=value, rule=rule, threshold=threshold, verdict=verdict, note=note)


def _recent_gain(champion: ChampionComparison | None, floor: float) -> GateCheck:
    """gate.min_recent_gain: beat the champion on the labelled production test images (`recent`)."""
    name = "recent accuracy - champion"
    if champion is None:
        return check(name, None, ">=", floor, "no champion yet")
    if not champion.comparable:
        return check(name, None, ">=", floor, champion.note)
    if not champion.recent_n:
        return check(name, None, ">=", floor, "no production images in the test split")
    assert champion.candidate_recent_accuracy is not None and champion.champion_recent_accuracy is not None
    gain = champion.candidate_recent_accuracy - champion.champion_recent_accuracy
    return check(
        f"recent accuracy - champion v{champion.champion_version}", gain, ">=", floor, f"n={champion.recent_n}"
    )


def _champion_check(evaluation: Evaluation, report: ReportPart, headline: str, margin: float) -> GateCheck:
    """gate.non_inferiority_margin: lose at most `margin` of the headline metric to the champion, paired on the
    same test images."""
    champion = evaluation.champion
    if champion is None:
        return check(f"{headline} - champion", None, ">=", -margin, "no champion yet")
    if not champion.comparable:
        return check(f"{headline} - champion", None, ">=", -margin, champion.note)
    difference, note = report.champion_difference(evaluation)
    return check(f"{headline} - champion v{champion.champion_version}", difference, ">=", -margin, note)


def _leakage(audit: DataAudit | None, ceiling: int) -> GateCheck:
    """gate.max_leakage: test images with a near-copy in train (the data audit), named in the note."""
    name = "test images leaked into train"
    if audit is None or not audit.enabled:
        return check(name, None, "<=", ceiling, "no data audit: audit.enabled false, or a run from before it")
    leaked = audit.leaked("test")
    shown = ", ".join(leaked[:3]) + (f" and {len(leaked) - 3} more" if len(leaked) > 3 else "")
    return check(name, len(leaked), "<=", ceiling, f"{shown}: see reports/audit.html" if leaked else "")


def decide(
    evaluation: Evaluation,
    params: GateParams,
    quantization: QuantizationReport | None = None,
    audit: DataAudit | None = None,
) -> GateDecision:
    """Absolute floors, non-inferiority to the champion, slice floors, behaviour, the size, latency
    and accuracy of the artifact that ships (the torch model's when nothing was exported), and the test split's
    leakage (`audit`, the data audit's findings). The task's report part says which metrics: a classifier's
    accuracy, a detector's mAP (overall, per class and per slice)."""
    report = task(evaluation.task).report
    headline, floor = report.headline_metric(params)
    checks = report.floors(evaluation, params)
    checks.append(_champion_check(evaluation, report, headline, params.non_inferiority_margin))
    if params.min_recent_gain is not None:
        checks.append(_recent_gain(evaluation.champion, params.min_recent_gain))
    slice_floor = report.slice_floor(params)
    for piece, score in zip(evaluation.slices, report.slice_scores(evaluation), strict=True):
        name = f"slice {piece.attribute}={piece.value} {headline}"
        if piece.n >= params.min_slice_size:
            checks.append(check(name, score, ">=", slice_floor, f"n={piece.n}"))
        else:
            note = f"n={piece.n} < min_slice_size {params.min_slice_size}"
            checks.append(check(name, None, ">=", slice_floor, note))
    for transform, share in params.min_invariance.checks().items():
        checks.append(check(f"same prediction under {transform}", evaluation.invariance.get(transform), ">=", share))
    if quantization is not None:
        name = f"{headline} of shipped {quantization.shipped}"
        checks.append(check(name, quantization.shipped_artifact.score, ">=", floor))
    shipped = quantization.footprint() if quantization else evaluation.footprint
    size, latency = (shipped.size_mb, shipped.latency_ms) if shipped else (None, None)
    checks.append(check("model size MB", size, "<=", params.max_model_size_mb, shipped.format if shipped else ""))
    note = shipped.describe() if shipped else "not measured"
    checks.append(check("latency ms (batch 1)", latency, "<=", params.max_latency_ms, note))
    if params.max_leakage is not None:
        checks.append(_leakage(audit, params.max_leakage))
    return GateDecision(checks=checks)
