"""Gradual rollout: which arm answers a request (champion or canary), which requests a shadow also scores, and
which versions may be a canary at all.

A canary answers real clients, so it must be the version waiting for review: the `challenger` (the newest
version that passed its gate, neither rejected nor promoted yet). A shadow answers nobody; any version with a
shipped ONNX file may shadow the champion.
"""

import hashlib
import random
from typing import TYPE_CHECKING

from cvops.errors import PromotionRefusedError
from cvops.registry.aliases import APPROVED, CHALLENGER, CHAMPION, REJECTED
from cvops.serving.inference_log import SHADOW

if TYPE_CHECKING:  # the service imports this module where MLflow is not installed
    from cvops.registry.model_registry import ModelRegistry, VersionInfo

CANARY = "canary"
ARMS = (CHAMPION, CANARY, SHADOW)  # who answered, or scored, a logged request
KEY_HEADER = "x-request-key"  # a client's stable key (user, session): the same key always reaches the same arm


def takes_share(fraction: float, key: str | None = None, rng: random.Random | None = None) -> bool:
    """Whether a request falls in the `fraction` share: by a hash of `key` when given (sticky, and monotone: a
    larger fraction only adds keys), else at random."""
    if key:
        point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    else:
        point = (rng or random).random()
    return point < fraction


def canary_version(registry: "ModelRegistry", selector: str) -> "VersionInfo | None":
    """The version `selector` (challenger, or a number) names while it is the challenger; None once it is not."""
    challenger = registry.alias(CHALLENGER)
    if challenger is None or selector not in (CHALLENGER, challenger.version):
        return None
    return challenger


def check_canary(registry: "ModelRegistry", selector: str) -> "VersionInfo":
    """`canary_version`, or a one-line refusal saying why the version cannot answer clients."""
    if found := canary_version(registry, selector):
        return found
    if selector == CHALLENGER:
        raise PromotionRefusedError(
            f"{registry.name} has no challenger to canary: train a version that passes its gate (`cvops run training`)"
        )
    info = registry.get(selector)
    if CHAMPION in info.aliases:
        why = "it is already the champion"
    elif info.approval == REJECTED:
        why = f"it was rejected by {info.tags.get('rejected_by', '?')} ({info.tags.get('approval_note', 'no reason')})"
    elif info.gate != "passed":
        why = f"it did not pass its gate ({info.tags.get('gate_failed_checks', 'no gate record')})"
    elif info.approval == APPROVED:
        why = "it was approved before (a former champion): roll back with `cvops models rollback` instead"
    else:
        why = "a newer version is the challenger"
    raise PromotionRefusedError(
        f"version {selector} cannot be a canary: {why}; a canary must be the challenger (`cvops models list`)"
    )
