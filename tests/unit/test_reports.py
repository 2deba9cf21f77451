"""Evidence as data: per-class metrics keep the user's class names, and reach MLflow under names it accepts."""

from mlflow.utils.validation import _validate_metric_name

from cvops.evaluation.reports import Evaluation, metric_name

NAMES = ["große Teile", "café crème", "a+b", "a_b", "a&b", "weiß/grau", "dots..", "0"]


def test_class_names_map_to_distinct_metric_names_mlflow_accepts() -> None:
    mapped = [metric_name(f"recall_{name}") for name in NAMES]
    for name in mapped:
        _validate_metric_name(name)  # raises for a name MLflow refuses
    assert len(set(mapped)) == len(NAMES)
    assert metric_name("recall_große Teile") == "recall_große Teile"  # unchanged where MLflow takes it as it is
    assert metric_name("recall_a+b") == metric_name("recall_a+b")  # stable: the same class, the same metric


def test_evaluation_keeps_exact_names_and_flattens_to_safe_ones() -> None:
    metrics = {"accuracy": 0.9, "macro_f1": 0.9, **{f"recall_{n}": 0.5 for n in NAMES}}
    evaluation = Evaluation(metrics=metrics, class_names=NAMES, confusion_matrix_png="cm.png", num_images=10)
    assert evaluation.metrics["recall_a+b"] == 0.5
    flat = evaluation.flat_metrics()
    assert len(flat) == len(metrics)
    for name in flat:
        _validate_metric_name(name)
