"""The MLflow model registry: versions with evidence and lineage, reviewed promotion, rejection, rollback.

Aliases carry the deployment state (`champion` is served, `challenger` is the newest version that
passed its gate, `previous` is the champion before the current one); tags carry the evidence and
the approval record. Every change to the aliases happens under one lock, so concurrent promotions
leave exactly one consistent champion.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from cvops.config import Project
from cvops.errors import ModelError, PromotionRefusedError, RegistryError
from cvops.evaluation.gate import GateDecision
from cvops.registry.aliases import APPROVED, CHALLENGER, CHAMPION, PENDING, PREVIOUS, REJECTED
from cvops.registry.identity import MANAGE, current_identity
from cvops.registry.tracking import TrainedModel
from cvops.stack.state import LockBusy, held

log = logging.getLogger(__name__)
HEADLINE_METRICS = ("accuracy", "macro_f1", "map", "map_50")  # a classifier's, a detector's
# Version tags other modules write or read (evidence and lineage tags are named in evidence.py, lineage.py)
MODEL_INFO_TAG = "model_info"  # the TrainedModel reference (JSON)
SHIPPED_TAG = "onnx_shipped"  # the MLflow URI of the ONNX file that ships
SHIPPED_FORMAT_TAG = "shipped_format"  # which artifact format ships (onnx-fp32, onnx-int8)
SHIPPED_SCORE_TAG = "shipped_score"  # that artifact's test score: accuracy, or mAP for a detector
REFERENCE_TAG = "reference"  # the MLflow URI of the version's monitoring reference folder
MODEL_CARD_TAG = "model_card"
DISTILLED_FROM_TAG = "distilled_from"  # a distilled student's version: its teacher's version number
BENTO_TAG, BENTOML_MODEL_TAG = "bento", "bentoml_model"
# Registered-model tag: the version cvops itself last made champion. An alias moved by hand in the
# MLflow UI no longer matches it, which is how `list` tells a promotion made outside cvops.
CVOPS_CHAMPION_TAG = "cvops.champion"
OUTSIDE_CVOPS = "promoted outside cvops, no approval record"
AUTO_REVIEWER = "cvops-auto"
# With a team stack: the MLflow user who registered a version (four eyes), and the account an automatic
# promotion (registry.require_approval: false) acted through
TRAINED_BY_TAG, SERVICE_ACCOUNT_TAG = "trained_by", "approved_via"
LOCK_WAIT_SECONDS = 120
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)  # what is accepted wherever a version number is


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class VersionInfo(BaseModel):
    """One registered version as the review commands show it."""

    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str
    created: datetime
    description: str = ""

    @classmethod
    def from_mlflow(cls, version: ModelVersion, aliases: list[str] | None = None) -> "VersionInfo":
        return cls(
            version=str(version.version),
            aliases=sorted(version.aliases or aliases or []),
            tags=dict(version.tags or {}),
            run_id=version.run_id or "",
            created=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
            description=version.description or "",
        )

    @property
    def gate(self) -> str:
        return self.tags.get("gate", "none")

    @property
    def approval(self) -> str:
        return self.tags.get("approval", "—")


class ModelRegistry:
    """The versions of one registered model on the active MLflow tracking store."""

    def __init__(
        self, model_name: str, locks_dir: Path, state_url: str | None = None, allow_self_approval: bool = False
    ) -> None:
        self.name = model_name
        self.client = MlflowClient()
        self.locks_dir, self.state_url = locks_dir, state_url
        self.allow_self_approval = allow_self_approval

    @classmethod
    def of(cls, project: Project, model_name: str, allow_self_approval: bool = False) -> "ModelRegistry":
        """The registered model `model_name` on the tracking store MLflow points at; its alias changes are
        serialised across every process sharing the project's state (the checkout, or the team's database)."""
        return cls(model_name, project.locks_dir, project.state_url, allow_self_approval)

    @contextmanager
    def lock(self) -> Iterator[None]:
        try:
            with held(f"registry-{self.name}", self.state_url, self.locks_dir, wait=LOCK_WAIT_SECONDS):
                yield
        except LockBusy as err:
            raise RegistryError(
                f"another cvops process has held the registry lock of {self.name} for "
                f"{LOCK_WAIT_SECONDS} s: try again when it is done"
            ) from err

    def reviewer_option(self) -> str:
        """What a decision command needs besides the version, for hints: nothing when the MLflow server says
        who is signed in (a team stack), `--reviewer NAME` otherwise."""
        try:
            signed_in = current_identity(mlflow.get_tracking_uri()) is not None
        except PromotionRefusedError:
            signed_in = False
        return "" if signed_in else " --reviewer NAME"

    def acting_reviewer(self, typed: str | None, act: str) -> str:
        """Who is recorded as deciding `act`. With a team stack, the MLflow user the server authenticated, who
        must have MANAGE on the registered model, and a typed name other than theirs is refused; locally, the
        typed name."""
        identity = current_identity(mlflow.get_tracking_uri())
        if identity is None:
            if not typed or not typed.strip():
                raise PromotionRefusedError(f"{act} needs --reviewer NAME, for the record")
            return typed.strip()
        if typed and typed.strip() != identity.user:
            raise PromotionRefusedError(
                f"you are signed in to MLflow as '{identity.user}', so --reviewer '{typed}' is refused: decisions "
                "are recorded as the signed-in user (set MLFLOW_TRACKING_USERNAME/_PASSWORD to act as another)"
            )
        permission = identity.permission(self.name)
        if permission != MANAGE:
            raise PromotionRefusedError(
                f"'{identity.user}' may not {act} {self.name}: that needs MANAGE on the registered model and the "
                f"MLflow server grants {permission}; ask an MLflow admin, or a reviewer to do it"
            )
        return identity.user

    def register(
        self,
        trained: TrainedModel,
        metrics: dict[str, float],
        lineage: dict[str, str],
        decision: GateDecision,
        require_approval: bool = True,
    ) -> str:
        """A new version with its metrics, lineage and gate verdict; `challenger` and approval=pending
        when the gate passed, neither when it failed (the evidence stays for review).

        With `require_approval` false, a passing version becomes the champion at once (unattended retraining).
        """
        if not self.client.search_registered_models(filter_string=f"name = '{self.name}'"):
            self.client.create_registered_model(
                self.name, description=f"cvops image {'detector' if 'map' in metrics else 'classifier'}"
            )
        identity = current_identity(mlflow.get_tracking_uri())
        tags = {
            **lineage,
            **{k: f"{metrics[k]:.4f}" for k in HEADLINE_METRICS if k in metrics},
            "gate": "passed" if decision.passed else "failed",
            MODEL_INFO_TAG: trained.model_dump_json(),
            **({TRAINED_BY_TAG: identity.user} if identity else {}),
        }
        if decision.passed:
            tags["approval"] = PENDING
        else:
            tags["gate_failed_checks"] = "; ".join(check.name for check in decision.failed)
        version = self.client.create_model_version(
            name=self.name,
            source=trained.model_uri,
            run_id=trained.run_id,
            model_id=trained.model_id,
            tags=tags,
            description=f"{trained.architecture} on {len(trained.class_names)} classes "
            f"({', '.join(trained.class_names)}); gate {tags['gate']}",
        )
        number = str(version.version)
        if decision.passed:
            with self.lock():
                self.client.set_registered_model_alias(self.name, CHALLENGER, number)
        log.info("registered %s version %s (gate %s)", self.name, number, tags["gate"])
        if decision.passed and not require_approval:  # a service account acts; four eyes does not apply
            account = {SERVICE_ACCOUNT_TAG: identity.user} if identity else {}
            self._make_champion(
                number, AUTO_REVIEWER, "gate passed; registry.require_approval is false", False, account
            )
        return number

    def record_gate(self, version: str, decision: GateDecision) -> None:
        """A new gate decision for an existing version (re-quantized): a version that now fails loses
        `challenger`; one that now passes waits for a reviewer's `promote` (it does not displace a newer challenger)."""
        with self.lock():
            info = self.get(version)
            self.tag(
                version,
                {
                    "gate": "passed" if decision.passed else "failed",
                    "gate_failed_checks": "; ".join(check.name for check in decision.failed),
                },
            )
            if decision.passed and info.approval == "—":
                self.tag(version, {"approval": PENDING})
            if not decision.passed and CHALLENGER in info.aliases:
                self.client.delete_registered_model_alias(self.name, CHALLENGER)

    def versions(self) -> list[VersionInfo]:
        """Newest first."""
        found = self.client.search_model_versions(f"name = '{self.name}'")
        if not found:
            return []
        aliases: dict[str, list[str]] = {}  # search results leave out the aliases; the registered model has them
        for alias, number in self.client.get_registered_model(self.name).aliases.items():
            aliases.setdefault(str(number), []).append(alias)
        infos = (VersionInfo.from_mlflow(v, aliases.get(str(v.version))) for v in found)
        return sorted(infos, key=lambda v: int(v.version), reverse=True)

    def get(self, version: str) -> VersionInfo:
        try:
            return VersionInfo.from_mlflow(self.client.get_model_version(self.name, str(version)))
        except MlflowException as err:
            known = ", ".join(v.version for v in self.versions()) or "none yet"
            raise RegistryError(f"{self.name} has no version '{version}' (versions: {known})") from err

    def alias(self, alias: str) -> VersionInfo | None:
        try:
            return VersionInfo.from_mlflow(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def resolve(self, text: str) -> VersionInfo:
        """The version `text` names: a version number, or an alias (champion, challenger, previous, or one set in
        the MLflow UI). Everything that takes a version takes either; an alias that names no version now, or any
        other text, is a RegistryError that says what to do."""
        text = text.strip()
        if text.isdigit():
            return self.get(text)
        found = self.alias(text)
        if found is not None:
            return found
        promote = f"`cvops models promote V{self.reviewer_option()}`"
        hints = {
            CHAMPION: f"promote a version with {promote}",
            CHALLENGER: "train one with `cvops run training` (a version that passes its gate becomes it)",
            PREVIOUS: f"the champion becomes previous when another version is promoted ({promote})",
        }
        if text in hints:
            raise RegistryError(f"{self.name} has no '{text}': {hints[text]}")
        known = ", ".join(v.version for v in self.versions()) or "none yet"
        raise RegistryError(
            f"{self.name} has no version '{text}': give a version number (versions: {known}) "
            f"or an alias ({', '.join(ALIASES)})"
        )

    def tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def outside_cvops(self, info: VersionInfo) -> bool:
        """True for a champion whose alias was set outside cvops (e.g. in the MLflow UI)."""
        if CHAMPION not in info.aliases:
            return False
        model_tags = self.client.get_registered_model(self.name).tags
        return model_tags.get(CVOPS_CHAMPION_TAG) != info.version or info.approval != APPROVED

    def promote(
        self, version: str, reviewer: str | None = None, note: str = "", override: bool = False
    ) -> VersionInfo | None:
        """Make `version` the champion, recording who approved it (see `acting_reviewer`); the old champion
        becomes `previous`.

        Returns the old champion. Refuses a rejected version, a
        version whose gate did not pass unless `override` with a note that says why, and (four eyes) a
        version the approving user trained, unless `registry.allow_self_approval`.
        """
        reviewer = self.acting_reviewer(reviewer, "promote")
        trained_by = self.get(version).tags.get(TRAINED_BY_TAG)
        if trained_by == reviewer and not self.allow_self_approval:
            raise PromotionRefusedError(
                f"four eyes: '{reviewer}' trained version {version} and cannot also approve it; another reviewer "
                "must (registry.allow_self_approval is false)"
            )
        return self._make_champion(version, reviewer, note, override, {})

    def _make_champion(
        self, version: str, reviewer: str, note: str, override: bool, extra: dict[str, str]
    ) -> VersionInfo | None:
        with self.lock():
            info = self.get(version)
            if CHAMPION in info.aliases:
                raise PromotionRefusedError(f"version {version} is already the champion")
            if info.approval == REJECTED:
                raise PromotionRefusedError(
                    f"version {version} was rejected by {info.tags.get('rejected_by', '?')} "
                    f"({info.tags.get('approval_note', 'no reason')}); train and register a new version"
                )
            tags = {
                "approval": APPROVED,
                "approved_by": reviewer,
                "approved_at": _now(),
                "approval_note": note,
                **extra,
            }
            if info.gate != "passed":
                if not override:
                    failed = info.tags.get("gate_failed_checks", "no gate record")
                    raise PromotionRefusedError(
                        f"version {version} did not pass its gate ({failed}); see `cvops models show {version}`, "
                        "or promote with --override --note WHY"
                    )
                if not note.strip():
                    raise PromotionRefusedError("--override needs --note saying why the failed gate is acceptable")
                tags["gate_override"] = "true"
            old = self.alias(CHAMPION)
            self.tag(version, tags)
            if old is not None:
                self.client.set_registered_model_alias(self.name, PREVIOUS, old.version)
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
            if CHALLENGER in info.aliases or (old is not None and CHALLENGER in old.aliases):
                # a challenger awaits review; the new champion or one made champion in the UI no longer does
                self.client.delete_registered_model_alias(self.name, CHALLENGER)
            self.client.set_registered_model_tag(self.name, CVOPS_CHAMPION_TAG, version)
        log.debug("%s: version %s is champion (approved by %s)", self.name, version, reviewer)
        return old

    def reject(self, version: str, reviewer: str | None, reason: str) -> None:
        """Record a rejection (who: see `acting_reviewer`); a rejected version loses `challenger`/`previous` and
        can never be promoted."""
        if not reason.strip():
            raise PromotionRefusedError("a rejection needs --reason, for the record")
        reviewer = self.acting_reviewer(reviewer, "reject")
        with self.lock():
            info = self.get(version)
            if CHAMPION in info.aliases:
                raise PromotionRefusedError(
                    f"version {version} is the champion: `cvops models rollback` first, then reject it"
                )
            self.tag(
                version, {"approval": REJECTED, "rejected_by": reviewer, "rejected_at": _now(), "approval_note": reason}
            )
            for alias in (CHALLENGER, PREVIOUS):
                if alias in info.aliases:
                    self.client.delete_registered_model_alias(self.name, alias)

    def rollback(self, reviewer: str | None, reason: str) -> tuple[VersionInfo, VersionInfo]:
        """Champion <- previous, recording who (see `acting_reviewer`) and why on both; returns (restored, demoted)."""
        if not reason.strip():
            raise PromotionRefusedError("a rollback needs --reason, for the record")
        reviewer = self.acting_reviewer(reviewer, "roll back")
        with self.lock():
            demoted, restored = self.alias(CHAMPION), self.alias(PREVIOUS)
            if demoted is None:
                raise RegistryError(f"{self.name} has no champion to roll back")
            if restored is None:
                raise RegistryError(
                    f"{self.name} has no previous champion to roll back to; promote another version instead"
                )
            when = _now()
            self.tag(demoted.version, {"rolled_back_by": reviewer, "rolled_back_at": when, "rollback_reason": reason})
            self.tag(restored.version, {"restored_by": reviewer, "restored_at": when, "restore_reason": reason})
            self.client.set_registered_model_alias(self.name, CHAMPION, restored.version)
            self.client.delete_registered_model_alias(self.name, PREVIOUS)
            self.client.set_registered_model_tag(self.name, CVOPS_CHAMPION_TAG, restored.version)
            self.client.set_registered_model_tag(
                self.name,
                "cvops.last_rollback",
                json.dumps(
                    {"from": demoted.version, "to": restored.version, "by": reviewer, "at": when, "reason": reason}
                ),
            )
        log.debug("%s: rolled back from version %s to %s", self.name, demoted.version, restored.version)
        return self.get(restored.version), demoted

    def trained_model(self, info: VersionInfo) -> TrainedModel:
        """The reference to a version's torch model that cvops recorded when it registered the version."""
        if MODEL_INFO_TAG not in info.tags:
            raise ModelError(
                f"{self.name} v{info.version} has no '{MODEL_INFO_TAG}' tag (not registered by cvops): "
                "use a version that `cvops run training` registered"
            )
        return TrainedModel.model_validate_json(info.tags[MODEL_INFO_TAG])
