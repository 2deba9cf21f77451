"""Review and promotion on a real MLflow SQLite store: the gate decides who may become challenger,
reviewers move `champion` with an approval record, rollback restores `previous`, and concurrent
promotions leave one consistent champion."""

import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import timm
from filelock import FileLock

from cvops.config import GateParams, Project
from cvops.errors import PromotionRefusedError, RegistryError
from cvops.evaluation.evaluator import load_champion, plot_confusion_matrix
from cvops.evaluation.gate import decide
from cvops.evaluation.reports import Evaluation, Footprint, SliceMetrics
from cvops.registry.evidence import log_evaluation, log_gate_decision
from cvops.registry.model_registry import CVOPS_CHAMPION_TAG, ModelRegistry
from cvops.registry.tracking import log_trained_model, use_project_store
from cvops.serving.rollout import canary_version, check_canary
from tests.cli import assert_one_line_error, clean_env, cvops

pytestmark = pytest.mark.slow
CLASSES = ["cat", "dog"]


@pytest.fixture
def registry(project_dir: Path) -> ModelRegistry:
    project = Project(project_dir)
    use_project_store(project, "cvops")
    return ModelRegistry.of(project, "cvops-classifier")


def evidence(tmp_path: Path, accuracy: float) -> Evaluation:
    import numpy as np

    png = plot_confusion_matrix(np.array([0, 1]), np.array([0, 1]), CLASSES, tmp_path / "cm.png")
    metrics = {
        "accuracy": accuracy,
        "macro_f1": accuracy,
        "ece": 0.05,
        "accuracy_ci95_low": accuracy - 0.05,
        "accuracy_ci95_high": min(1.0, accuracy + 0.05),
        "macro_f1_ci95_low": accuracy - 0.05,
        "macro_f1_ci95_high": min(1.0, accuracy + 0.05),
    }
    for name in CLASSES:
        metrics.update(
            {f"precision_{name}": accuracy, f"recall_{name}": accuracy, f"f1_{name}": accuracy, f"support_{name}": 50.0}
        )
    return Evaluation(
        metrics=metrics,
        class_names=CLASSES,
        confusion_matrix_png=str(png),
        num_images=100,
        slices=[SliceMetrics(attribute="brightness", value="dark", n=40, accuracy=accuracy, macro_f1=accuracy)],
        footprint=Footprint(format="torch", size_mb=1.0, latency_ms=1.0, threads=1),
    )


def add_version(registry: ModelRegistry, tmp_path: Path, accuracy: float = 0.9, require_approval: bool = True) -> str:
    """What the training pipeline does after training: log model and evidence, gate, register."""
    evaluation = evidence(tmp_path, accuracy)
    decision = decide(evaluation, GateParams(min_invariance={"hflip": None}))
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("cvops").experiment_id):
        model = timm.create_model("resnet10t", num_classes=len(CLASSES))
        trained = log_trained_model(model, "resnet10t", CLASSES, 16, best_epoch=1, resize="letterbox", decoder="draft")
        log_evaluation(evaluation)
        log_gate_decision(decision)
    lineage = {"data_version": "d1", "git_commit": "abc", "params_hash": "p1"}
    return registry.register(trained, evaluation.metrics, lineage, decision, require_approval)


def aliases(registry: ModelRegistry) -> dict[str, str]:
    return {alias: str(v) for alias, v in registry.client.get_registered_model(registry.name).aliases.items()}


def test_gate_decides_challenger_and_pending_approval(registry, tmp_path) -> None:
    passed = add_version(registry, tmp_path, accuracy=0.9)
    failed = add_version(registry, tmp_path, accuracy=0.5)
    assert aliases(registry) == {"challenger": passed}
    good, bad = registry.get(passed), registry.get(failed)
    assert (good.gate, good.approval) == ("passed", "pending")
    assert (bad.gate, bad.approval) == ("failed", "—")
    assert "accuracy" in bad.tags["gate_failed_checks"] and "recall[cat]" in bad.tags["gate_failed_checks"]
    assert good.tags["data_version"] == "d1" and good.tags["accuracy"] == "0.9000"
    assert [v.version for v in registry.versions()] == [failed, passed]


def test_promote_moves_champion_and_keeps_previous_with_an_approval_record(registry, tmp_path) -> None:
    first, second = add_version(registry, tmp_path), add_version(registry, tmp_path)
    assert registry.promote(first, reviewer="alice", note="baseline") is None
    old = registry.promote(second, reviewer="bob", note="better on dark images")
    assert old is not None and old.version == first
    assert aliases(registry) == {"champion": second, "previous": first}  # challenger moved on with the promotion
    record = registry.get(second).tags
    assert (record["approval"], record["approved_by"]) == ("approved", "bob")
    assert record["approval_note"] == "better on dark images"
    assert record["approved_at"].startswith("20")
    assert not registry.outside_cvops(registry.get(second))
    with pytest.raises(PromotionRefusedError, match="already the champion"):
        registry.promote(second, reviewer="bob")


def test_failed_gate_is_refused_unless_overridden_with_a_note(registry, tmp_path) -> None:
    failed = add_version(registry, tmp_path, accuracy=0.5)
    with pytest.raises(PromotionRefusedError, match="did not pass its gate"):
        registry.promote(failed, reviewer="alice")
    with pytest.raises(PromotionRefusedError, match="--note"):
        registry.promote(failed, reviewer="alice", override=True)
    assert "champion" not in aliases(registry)
    registry.promote(failed, reviewer="alice", note="pilot on a known-easy line", override=True)
    record = registry.get(failed).tags
    assert aliases(registry)["champion"] == failed
    assert (record["gate_override"], record["approval_note"]) == ("true", "pilot on a known-easy line")


def test_rejected_version_loses_its_alias_and_cannot_be_promoted(registry, tmp_path) -> None:
    champion, candidate = add_version(registry, tmp_path), add_version(registry, tmp_path)
    registry.promote(champion, reviewer="alice")
    with pytest.raises(PromotionRefusedError, match="rollback"):
        registry.reject(champion, reviewer="bob", reason="x")
    registry.reject(candidate, reviewer="bob", reason="misses cracks")
    assert aliases(registry) == {"champion": champion}
    record = registry.get(candidate).tags
    assert (record["approval"], record["rejected_by"], record["approval_note"]) == ("rejected", "bob", "misses cracks")
    with pytest.raises(PromotionRefusedError, match="rejected by bob"):
        registry.promote(candidate, reviewer="alice", override=True, note="please")


def test_only_the_challenger_may_be_a_canary_and_each_refusal_says_why(registry, tmp_path) -> None:
    champion, failed, rejected, superseded, challenger = (
        add_version(registry, tmp_path, accuracy=a) for a in (0.9, 0.5, 0.9, 0.9, 0.9)
    )
    registry.promote(champion, reviewer="alice")
    registry.reject(rejected, reviewer="bob", reason="misses cracks")
    assert check_canary(registry, "challenger").version == check_canary(registry, challenger).version == challenger
    refusals = {
        champion: "already the champion",
        failed: "did not pass its gate",
        superseded: "a newer version is",
        rejected: "rejected by bob (misses cracks)",
    }
    for version, why in refusals.items():
        with pytest.raises(PromotionRefusedError, match=re.escape(why)):
            check_canary(registry, version)
    registry.promote(challenger, reviewer="alice")  # promoted: the canary's arm ends, and none is left to start
    assert canary_version(registry, challenger) is None
    with pytest.raises(PromotionRefusedError, match="no challenger to canary"):
        check_canary(registry, "challenger")


def test_rollback_restores_previous_once_and_records_who_and_why(registry, tmp_path) -> None:
    first, second = add_version(registry, tmp_path), add_version(registry, tmp_path)
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback("carol", "nothing to undo")
    registry.promote(first, reviewer="alice")
    registry.promote(second, reviewer="alice")
    restored, demoted = registry.rollback("carol", "false alarms in production")
    assert (restored.version, demoted.version) == (first, second)
    assert aliases(registry) == {"champion": first}
    assert registry.get(second).tags["rollback_reason"] == "false alarms in production"
    assert registry.get(first).tags["restored_by"] == "carol"
    assert not registry.outside_cvops(registry.get(first))
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("carol", "again")


def test_champion_set_in_the_ui_is_honoured_and_flagged(registry, tmp_path, project_dir) -> None:
    first, second = add_version(registry, tmp_path), add_version(registry, tmp_path)
    registry.promote(first, reviewer="alice")
    registry.client.set_registered_model_alias(registry.name, "champion", second)  # what the MLflow UI does
    assert registry.outside_cvops(registry.get(second))
    assert load_champion(registry).version == second  # honoured: the next challenger is compared with it
    listed = cvops(project_dir, "models", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    row = next(line for line in listed.stdout.splitlines() if line.split()[0] == second)
    assert "champion" in row and "promoted outside cvops, no approval record" in row
    registry.promote(first, reviewer="alice", note="back to the reviewed model")
    assert aliases(registry) == {"champion": first, "previous": second}
    assert registry.client.get_registered_model(registry.name).tags[CVOPS_CHAMPION_TAG] == first


def test_auto_promotion_when_approval_is_not_required(registry, tmp_path) -> None:
    first = add_version(registry, tmp_path, require_approval=False)
    failed = add_version(registry, tmp_path, accuracy=0.5, require_approval=False)
    second = add_version(registry, tmp_path, require_approval=False)
    assert aliases(registry) == {"champion": second, "previous": first}
    assert registry.get(second).tags["approved_by"] == "cvops-auto"
    assert registry.get(failed).approval == "—"  # a failed gate is never promoted, reviewer or not


def test_champion_loads_for_the_paired_comparison(registry, tmp_path) -> None:
    assert load_champion(registry) is None
    version = add_version(registry, tmp_path)
    registry.promote(version, reviewer="alice")
    champion = load_champion(registry)
    assert (champion.version, champion.class_names, champion.image_size, champion.data_version) == (
        version,
        CLASSES,
        16,
        "d1",
    )
    assert champion.resize == "letterbox"  # its rule, so its test images are resized as it was trained
    import torch

    assert champion.model(torch.zeros(1, 3, 16, 16)).shape == (1, 2)


PROMOTE_ON_SIGNAL = """
import logging, sys, time
from pathlib import Path
from cvops.config import Project
from cvops.registry.model_registry import ModelRegistry
from cvops.registry.tracking import use_project_store

project = Project(Path(sys.argv[1]))
use_project_store(project, "cvops")
registry = ModelRegistry.of(project, "cvops-classifier")
go = Path(sys.argv[3])
handler = logging.StreamHandler(sys.stdout)  # filelock says when it finds the lock held: "... not acquired ..."
logging.getLogger("filelock").addHandler(handler)
logging.getLogger("filelock").setLevel(logging.DEBUG)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
registry.promote(sys.argv[2], reviewer=f"reviewer-{sys.argv[2]}")
"""


def promoters(project_dir: Path, versions: list[str], go: Path) -> list[subprocess.Popen[str]]:
    """One process per version, each promoting it the moment `go` exists."""
    started = [
        subprocess.Popen(
            [sys.executable, "-c", PROMOTE_ON_SIGNAL, str(project_dir), v, str(go)],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in versions
    ]
    for process in started:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()[-2000:]
    return started


def test_a_promotion_waits_while_another_holds_the_registry(registry, tmp_path, project_dir) -> None:
    version = add_version(registry, tmp_path)
    with FileLock(Project(project_dir).locks_dir / "registry-cvops-classifier.lock"):
        (waiting,) = promoters(project_dir, [version], tmp_path / "go")
        (tmp_path / "go").touch()
        while "not acquired" not in (line := waiting.stdout.readline()):  # it reached the lock, and found it held
            assert line, waiting.stderr.read()[-2000:]
        assert waiting.poll() is None and "champion" not in aliases(registry)
    _, errors = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, errors[-2000:]
    assert aliases(registry) == {"champion": version}


def test_concurrent_promotions_leave_one_consistent_champion(registry, tmp_path, project_dir) -> None:
    base, a, b = (add_version(registry, tmp_path) for _ in range(3))
    registry.promote(base, reviewer="alice")
    racers = promoters(project_dir, [a, b], tmp_path / "go")
    (tmp_path / "go").touch()
    for racer in racers:
        _, errors = racer.communicate(timeout=120)  # read as they write: filelock's debug lines must not stall them
        assert racer.returncode == 0, errors[-2000:]
    final = aliases(registry)
    # serialised: one promotion ran first, the other found it as champion and made it `previous`
    assert {final["champion"], final["previous"]} == {a, b}
    assert registry.client.get_registered_model(registry.name).tags[CVOPS_CHAMPION_TAG] == final["champion"]
    assert all(registry.get(v).approval == "approved" for v in (a, b))


def test_bad_review_commands_get_one_line_errors(registry, tmp_path, project_dir) -> None:
    version = add_version(registry, tmp_path)
    assert_one_line_error(cvops(project_dir, "models", "show", "42"), 8, "no version '42'")
    assert_one_line_error(
        cvops(project_dir, "models", "rollback", "--reviewer", "x", "--reason", "y"), 8, "no champion"
    )
    registry.reject(version, reviewer="bob", reason="blurry")
    assert_one_line_error(cvops(project_dir, "models", "promote", version, "--reviewer", "al"), 9, "rejected")
    assert_one_line_error(cvops(project_dir, "models", "review"), 8, "no challenger")
    # serving refuses before a server starts: nothing to serve, or a version without its ONNX file
    assert_one_line_error(cvops(project_dir, "serve", "--port", "1"), 8, "no 'champion'")
    assert_one_line_error(cvops(project_dir, "serve", "--version", version), 5, "no ONNX artifact")
    assert_one_line_error(cvops(project_dir, "package", version), 5, f"cvops quantize {version}")
