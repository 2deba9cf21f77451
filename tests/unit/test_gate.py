"""The gate decides on every check from the evaluation evidence, and says which check failed."""

import pytest

from cvops.config import GateParams
from cvops.evaluation.gate import decide
from cvops.evaluation.reports import (
    ChampionComparison,
    Evaluation,
    Footprint,
    OnnxMeasurement,
    QuantizationReport,
    SliceMetrics,
)


def evidence(**changes) -> Evaluation:
    metrics = {"accuracy": 0.9, "macro_f1": 0.88, "recall_ok": 0.95, "recall_bad": 0.8}
    metrics.update(changes.pop("metrics", {}))
    fields = {
        "metrics": metrics,
        "class_names": ["bad", "ok"],
        "confusion_matrix_png": "cm.png",
        "num_images": 400,
        "slices": [
            SliceMetrics(attribute="cell_type", value="mono", n=150, accuracy=0.91, macro_f1=0.9),
            SliceMetrics(attribute="cell_type", value="poly", n=10, accuracy=0.2, macro_f1=0.2),
        ],
        "invariance": {"hflip": 0.97},
        "footprint": Footprint(format="torch", size_mb=13.0, latency_ms=12.0, threads=2),
    }
    fields.update(changes)
    return Evaluation(**fields)


def comparison(difference: float) -> ChampionComparison:
    return ChampionComparison(
        champion_version="3",
        comparable=True,
        n=400,
        candidate_accuracy=0.9,
        champion_accuracy=0.9 - difference,
        accuracy_difference=difference,
        mcnemar_p_value=0.2,
    )


def verdicts(decision) -> dict[str, str]:
    return {check.name: check.verdict for check in decision.checks}


def test_good_model_passes_and_small_slices_are_reported_not_gated():
    decision = decide(evidence(), GateParams())
    assert decision.passed
    found = verdicts(decision)
    assert found["slice cell_type=mono accuracy"] == "pass"
    assert found["slice cell_type=poly accuracy"] == "skip"  # 10 images < min_slice_size
    assert found["accuracy - champion"] == "skip"
    assert found["same prediction under hflip"] == "pass"
    assert "gate: PASSED" in decision.table()


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"metrics": {"accuracy": 0.7}}, "accuracy"),
        ({"metrics": {"macro_f1": 0.5}}, "macro_f1"),
        ({"metrics": {"recall_bad": 0.3}}, "recall[bad]"),
        ({"invariance": {"hflip": 0.5}}, "same prediction under hflip"),
        ({"footprint": Footprint(format="torch", size_mb=80, latency_ms=1, threads=2)}, "model size MB"),
        ({"footprint": Footprint(format="torch", size_mb=1, latency_ms=500, threads=2)}, "latency ms (batch 1)"),
        (
            {"slices": [SliceMetrics(attribute="brightness", value="dark", n=100, accuracy=0.5, macro_f1=0.5)]},
            "slice brightness=dark accuracy",
        ),
        ({"champion": comparison(-0.05)}, "accuracy - champion v3"),
    ],
)
def test_each_check_can_fail_the_gate_on_its_own(changes, failing):
    decision = decide(evidence(**changes), GateParams())
    assert not decision.passed
    assert [check.name for check in decision.failed] == [failing]
    assert "FAIL" in decision.table() and "gate: FAILED (1 checks)" in decision.table()


def test_non_inferiority_tolerates_a_loss_within_the_margin():
    assert decide(evidence(champion=comparison(-0.015)), GateParams(non_inferiority_margin=0.02)).passed
    assert not decide(evidence(champion=comparison(-0.025)), GateParams(non_inferiority_margin=0.02)).passed


def test_champion_with_other_classes_is_reported_and_skipped():
    other = ChampionComparison(champion_version="2", comparable=False, note="the champion predicts other classes")
    decision = decide(evidence(champion=other), GateParams())
    check = next(c for c in decision.checks if c.name.startswith("accuracy - champion"))
    assert check.verdict == "skip" and "other classes" in check.note


def test_the_recent_gain_is_checked_only_when_asked_and_only_with_production_images():
    recent = comparison(0.0).model_copy(
        update={"recent_n": 40, "candidate_recent_accuracy": 0.8, "champion_recent_accuracy": 0.6}
    )
    assert "recent accuracy - champion v3" not in verdicts(decide(evidence(champion=recent), GateParams()))
    assert (
        verdicts(decide(evidence(champion=recent), GateParams(min_recent_gain=0.1)))["recent accuracy - champion v3"]
        == "pass"
    )
    failed = decide(evidence(champion=recent), GateParams(min_recent_gain=0.25))
    assert [check.name for check in failed.failed] == ["recent accuracy - champion v3"]
    unseen = verdicts(decide(evidence(champion=comparison(0.0)), GateParams(min_recent_gain=0.0)))
    assert unseen["recent accuracy - champion"] == "skip"  # no production image in the test split yet


def test_invariance_checks_follow_params():
    params = GateParams(min_invariance={"hflip": None, "vflip": 0.9})
    found = verdicts(decide(evidence(invariance={"vflip": 0.95}), params))
    assert found["same prediction under vflip"] == "pass"
    assert "same prediction under hflip" not in found


def test_decision_round_trips_through_json_with_its_verdict():
    decision = decide(evidence(metrics={"accuracy": 0.1}), GateParams())
    again = type(decision).model_validate_json(decision.model_dump_json())
    assert again == decision and again.passed is False
    assert '"passed":false' in decision.model_dump_json()


def quantized(int8_accuracy: float, shipped: str = "onnx-int8") -> QuantizationReport:
    def artifact(fmt: str, accuracy: float, size: float, b1: float) -> OnnxMeasurement:
        return OnnxMeasurement(
            format=fmt,
            path=f"{fmt}.onnx",
            sha256="0",
            size_mb=size,
            accuracy=accuracy,
            agreement=0.99,
            latency_ms_b1=b1,
            latency_ms_b32=b1 * 20,
        )

    return QuantizationReport(
        fp32=artifact("onnx-fp32", 0.9, 13.0, 8.0),
        int8=artifact("onnx-int8", int8_accuracy, 3.5, 300.0),
        torch_accuracy=0.9,
        parity_max_abs_diff=1e-6,
        calibration_method="minmax",
        calibration_ids=["a.png"],
        threads=2,
        shipped=shipped,
        reason="test",
    )


def test_gate_judges_the_shipped_artifact_not_the_torch_model():
    decision = decide(evidence(), GateParams(), quantized(int8_accuracy=0.5))
    assert [c.name for c in decision.failed] == ["accuracy of shipped onnx-int8", "latency ms (batch 1)"]
    size = next(c for c in decision.checks if c.name == "model size MB")
    assert size.value == 3.5 and "onnx-int8" in size.note
    shipped_fp32 = decide(evidence(), GateParams(), quantized(int8_accuracy=0.5, shipped="onnx-fp32"))
    assert shipped_fp32.passed


def detector_evaluation(map_: float, class_aps: dict[str, float], slice_map: float, difference: float | None):
    metrics = {"map": map_, "map_50": map_ + 0.2} | {f"ap_{c}": ap for c, ap in class_aps.items()}
    champion = None
    if difference is not None:
        champion = ChampionComparison(
            champion_version="2",
            comparable=True,
            n=80,
            candidate_map=map_,
            champion_map=map_ - difference,
            map_difference=difference,
            difference_ci95_low=difference - 0.03,
            difference_ci95_high=difference + 0.03,
        )
    small = SliceMetrics(attribute="object_size", value="small", n=120, mean_ap=slice_map)
    return Evaluation(
        metrics=metrics,
        class_names=list(class_aps),
        confusion_matrix_png="",
        num_images=80,
        task="detection",
        champion=champion,
        slices=[small],
    )


def test_a_detector_is_judged_on_map_per_class_ap_slices_and_the_champions_map():
    params = GateParams()
    passing = decide(detector_evaluation(0.45, {"0": 0.4, "1": 0.5, "2": -1.0}, 0.3, 0.01), params)
    assert passing.passed, passing.table()
    names = {c.name: c for c in passing.checks}
    assert names["AP[2]"].verdict == "skip" and names["AP[2]"].note == "no test boxes"
    assert "accuracy" not in names and "mAP - champion v2" in names and "slice object_size=small mAP" in names
    failing = decide(detector_evaluation(0.25, {"0": 0.1, "1": 0.5}, 0.1, -0.05), params)
    assert {c.name for c in failing.failed} == {"mAP", "AP[0]", "slice object_size=small mAP", "mAP - champion v2"}
