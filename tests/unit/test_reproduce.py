"""A reproduction's verdict compares the metrics the original logged an interval of: a classifier's accuracy and
macro-F1, a detector's mAP (its runs log no accuracy: a detector was "not reproduced" whatever happened)."""

from datetime import UTC, datetime

from cvops.cli.reproduce import Reproduction
from cvops.registry.model_registry import VersionInfo


def version(number: str, data: str = "d1") -> VersionInfo:
    return VersionInfo(
        version=number, aliases=[], tags={"data_version": data}, run_id=number, created=datetime.now(UTC)
    )


def detector_run(value: float) -> dict[str, float]:
    return {"test_map": value, "test_map_ci95_low": 0.50, "test_map_ci95_high": 0.60, "test_map_50": 0.8}


def test_a_detector_is_judged_by_its_map_and_its_interval() -> None:
    same = Reproduction(version("1"), "cvops-detector-reproduce", version("1"), detector_run(0.55), detector_run(0.57))
    assert same.headline == ["map"] and same.reproduced, same.failures
    assert "map within the original's 95% intervals" in same.verdict
    outside = Reproduction(version("1"), "m", version("1"), detector_run(0.55), detector_run(0.40))
    assert not outside.reproduced and "map 0.4000 outside" in outside.verdict


def test_a_classifier_is_judged_by_accuracy_and_macro_f1_and_its_data_version() -> None:
    run = {
        f"test_{n}{s}": v
        for n in ("accuracy", "macro_f1")
        for s, v in (("", 0.9), ("_ci95_low", 0.85), ("_ci95_high", 0.95))
    }
    other_data = Reproduction(version("1"), "m", version("1", data="d2"), run, run)
    assert other_data.headline == ["accuracy", "macro_f1"]
    assert other_data.failures == ["the rerun trained on another data version"]
    assert not Reproduction(version("1"), "m", version("1"), {}, run).reproduced  # nothing to compare is no verdict
