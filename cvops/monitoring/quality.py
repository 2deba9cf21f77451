"""Live quality: the champion's accuracy on the served requests whose true label came back (cvops.serving.feedback);
a detector's live mAP is its monitor part's (cvops/tasks/detection/monitor.py), in the same LiveQuality.

Accuracy gets a 95% Wilson interval (exact arithmetic, so a decision never depends on a random draw or the
machine's load). The champion is degraded when the whole interval lies below its test accuracy minus
`monitor.max_accuracy_drop`; with fewer than `monitor.min_feedback` labelled answers there is no verdict.
"""

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.stats import binomtest
from sklearn.metrics import f1_score, recall_score

from cvops.config import MonitorParams
from cvops.serving.feedback import TRUE_LABEL

QualityStatus = Literal["ok", "low", "not_enough_feedback"]


class LiveQuality(BaseModel):
    status: QualityStatus
    model_version: str
    labelled: int  # answers of model_version in the window with a true label (a detector's: true boxes)
    test_accuracy: float | None  # the version's `metric`, from its evaluation (registry tag)
    max_drop: float
    metric: Literal["accuracy", "mAP"] = "accuracy"  # what accuracy, low, high and test_accuracy measure
    accuracy: float | None = None  # live `metric`
    low: float | None = None  # its 95% interval
    high: float | None = None
    macro_f1: float | None = None
    class_recall: dict[str, float] = {}  # classes with at least one labelled answer

    @property
    def line(self) -> str:
        if self.accuracy is None:
            return f"live {self.metric}: not enough feedback ({self.labelled} labelled requests)"
        interval = f"[{self.low:.3f}, {self.high:.3f}]"
        return f"live {self.metric} {self.accuracy:.3f} {interval} on {self.labelled} labelled requests"

    @property
    def reason(self) -> str:
        if self.status == "not_enough_feedback":
            return f"{self.labelled} labelled answers of version {self.model_version}: not enough feedback"
        return f"{self.line}, {self.against_test}"

    @property
    def against_test(self) -> str:
        """Where the interval lies against the floor: the test accuracy minus monitor.max_accuracy_drop."""
        if self.test_accuracy is None:
            return f"version {self.model_version} records no test accuracy to compare with"
        relation = "below" if self.status == "low" else "not wholly below"
        return (
            f"{relation} test {self.metric} {self.test_accuracy:.3f} - monitor.max_accuracy_drop {self.max_drop:.3f} "
            f"= {self.test_accuracy - self.max_drop:.3f}"
        )

    def metrics(self) -> dict[str, float]:
        """For MLflow, beside the drift metrics."""
        if self.accuracy is None:
            return {"live_labelled": self.labelled}
        if self.metric == "mAP":
            return {"live_labelled": self.labelled, "live_map": self.accuracy, "live_map_low": self.low or 0.0} | {
                "live_map_high": self.high or 0.0
            }
        return {
            "live_labelled": self.labelled,
            "live_accuracy": self.accuracy,
            "live_accuracy_low": self.low or 0.0,
            "live_accuracy_high": self.high or 0.0,
            "live_macro_f1": self.macro_f1 or 0.0,
            **{f"live_recall_{c}": r for c, r in self.class_recall.items()},
        }


def live_quality(rows: pd.DataFrame, version: str, test_accuracy: float | None, params: MonitorParams) -> LiveQuality:
    """Accuracy, macro-F1 and per-class recall of `version` on the rows of the window with a true label."""
    labelled = rows
    if len(rows):
        mine = rows["model_version"].astype(str) == version if "model_version" in rows else False
        truth = rows[TRUE_LABEL].notna() if TRUE_LABEL in rows else False
        labelled = rows[mine & truth]
    quality = LiveQuality(
        status="not_enough_feedback",
        model_version=version,
        labelled=len(labelled),
        test_accuracy=test_accuracy,
        max_drop=params.max_accuracy_drop,
    )
    if len(labelled) < params.min_feedback:
        return quality
    y_true, y_pred = labelled[TRUE_LABEL].astype(str).to_numpy(), labelled["label"].astype(str).to_numpy()
    correct = int(np.sum(y_true == y_pred))
    interval = binomtest(correct, len(labelled)).proportion_ci(confidence_level=0.95, method="wilson")
    classes = sorted(set(y_true))
    recall = recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    low = test_accuracy is not None and interval.high < test_accuracy - params.max_accuracy_drop
    return quality.model_copy(
        update={
            "status": "low" if low else "ok",
            "accuracy": correct / len(labelled),
            "low": float(interval.low),
            "high": float(interval.high),
            "class_recall": dict(zip(classes, map(float, recall), strict=True)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        }
    )
