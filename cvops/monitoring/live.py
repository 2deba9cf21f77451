"""The served arms compared on live traffic (`cvops models compare-live`): per arm, requests, errors, latency,
scores and labels from the inference log; the canary tested against the champion on the same window, and the
shadow paired with the champion on the very same requests.

A canary and the champion answer different requests, so they are compared as two samples: error rate
(Fisher's exact test), label mix (chi-square) and score distribution (Kolmogorov-Smirnov), each at
alpha / 3 (Bonferroni). A shadow scored the champion's own requests, so it is compared pair by pair: the share
of requests where both predicted the same label, with a Wilson interval. Too few requests on either side is
said plainly, never read as a difference.
"""

import base64
import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.stats import binomtest, chi2_contingency, fisher_exact, ks_2samp

from cvops.config import Params, Project
from cvops.errors import DataError
from cvops.registry.model_registry import CHAMPION
from cvops.serving.rollout import ARMS, CANARY, SHADOW

JSON_FILE, HTML_FILE, PLOT_FILE = "compare_live.json", "compare_live.html", "compare_live.png"
Interval = tuple[float, float]


class ArmStats(BaseModel):
    arm: str
    versions: list[str]
    predictions: int  # logged rows: one per image answered (or scored, for the shadow), one per failed request
    errors: int
    error_rate: float
    error_interval: Interval  # Wilson, 95%
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    score_mean: float | None
    score_p10: float | None
    labels: dict[str, float]  # share of the arm's predictions per label


class ArmTest(BaseModel):
    """One arm against the champion."""

    arm: str
    conclusive: bool
    verdict: str
    p_values: dict[str, float] = {}  # canary: error_rate, label_mix, score
    error_rate_difference: float | None = None  # arm minus champion
    paired: int = 0  # shadow: requests both scored
    agreement: float | None = None
    agreement_interval: Interval | None = None


class LiveComparison(BaseModel):
    """`cvops models compare-live`: each served arm on the logged traffic, and each arm tested against the
    champion."""

    since: datetime | None
    until: datetime | None
    rows: int
    min_requests: int
    alpha: float
    arms: list[ArmStats]
    tests: list[ArmTest]

    def table(self) -> str:
        lines = [
            f"{'arm':<9} {'versions':<9} {'predictions':>11} {'errors':>15} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'score':>6}  top labels"
        ]
        for a in self.arms:
            errors = f"{a.error_rate:.1%} [{a.error_interval[0]:.1%},{a.error_interval[1]:.1%}]"
            top = ", ".join(f"{label} {share:.0%}" for label, share in list(a.labels.items())[:3])
            lines.append(
                f"{a.arm:<9} {','.join(a.versions):<9} {a.predictions:>11} {errors:>15} "
                f"{_number(a.latency_p50_ms):>7} {_number(a.latency_p95_ms):>7} {_number(a.score_mean, 3):>6}"
                f"  {top}"
            )
        return "\n".join(lines + [f"{t.arm} vs champion: {t.verdict}" for t in self.tests])


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _wilson(successes: int, trials: int) -> Interval:
    if trials == 0:
        return (0.0, 1.0)
    interval = binomtest(successes, trials).proportion_ci(0.95, method="wilson")
    return (float(interval.low), float(interval.high))


def arm_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The log's rows with `arm` and `status` filled in: rows logged before rollout answered as the champion."""
    rows = rows.copy()
    rows["timestamp"] = pd.to_datetime(rows["timestamp"], utc=True)
    rows["arm"] = rows["arm"].fillna(CHAMPION) if "arm" in rows else CHAMPION
    rows["status"] = pd.to_numeric(rows["status"], errors="coerce").fillna(200) if "status" in rows else 200
    for column in ("label", "score", "latency_ms", "request_id", "model_version"):
        if column not in rows:
            rows[column] = None
    return rows


def _stats(arm: str, rows: pd.DataFrame) -> ArmStats:
    ok = rows[rows["status"] == 200]
    errors = int((rows["status"] != 200).sum())
    latency = pd.to_numeric(rows["latency_ms"], errors="coerce").dropna()
    scores = pd.to_numeric(ok["score"], errors="coerce").dropna()
    labels = ok["label"].dropna().astype(str).value_counts(normalize=True)
    return ArmStats(
        arm=arm,
        versions=sorted({str(v) for v in rows["model_version"].dropna()}),
        predictions=len(rows),
        errors=errors,
        error_rate=errors / len(rows) if len(rows) else 0.0,
        error_interval=_wilson(errors, len(rows)),
        latency_p50_ms=float(latency.quantile(0.5)) if len(latency) else None,
        latency_p95_ms=float(latency.quantile(0.95)) if len(latency) else None,
        score_mean=float(scores.mean()) if len(scores) else None,
        score_p10=float(scores.quantile(0.1)) if len(scores) else None,
        labels={str(k): round(float(v), 4) for k, v in labels.items()},
    )


def _too_little(arm: str, counts: dict[str, int], need: int) -> ArmTest | None:
    short = {name: n for name, n in counts.items() if n < need}
    if not short:
        return None
    said = ", ".join(f"{name} {n}" for name, n in short.items())
    verdict = f"too little traffic to conclude ({said} predictions; need {need} each, --min-requests)"
    return ArmTest(arm=arm, conclusive=False, verdict=verdict)


def _beside(champion: pd.DataFrame, canary: pd.DataFrame) -> pd.DataFrame:
    """The champion's rows that the canary's assignment split from its own: those of the processes that ran
    the canary, while it ran. Traffic changes over a day, and other replicas may serve other clients."""
    live = champion["timestamp"].between(canary["timestamp"].min(), canary["timestamp"].max())
    if "replica" in champion and canary["replica"].notna().any():
        live &= champion["replica"].isin(set(canary["replica"].dropna()))
    return champion[live]


def _canary_test(champion: pd.DataFrame, canary: pd.DataFrame, need: int, alpha: float) -> ArmTest:
    if short := _too_little(CANARY, {CHAMPION: len(champion), CANARY: len(canary)}, need):
        return short
    failed = [int((frame["status"] != 200).sum()) for frame in (canary, champion)]
    _, p_errors = fisher_exact([[failed[0], len(canary) - failed[0]], [failed[1], len(champion) - failed[1]]])
    ok = [frame[frame["status"] == 200] for frame in (canary, champion)]
    mix = pd.crosstab(
        pd.concat([f["label"].astype(str) for f in ok]), np.repeat([CANARY, CHAMPION], [len(f) for f in ok])
    )
    p_mix = float(chi2_contingency(mix.to_numpy())[1]) if mix.shape[0] > 1 else 1.0
    # scores to 0.001: onnxruntime's results move in the 6th digit with the batch a request shared, which a
    # KS test on thousands of repeats of the same images would read as a difference
    scores = [pd.to_numeric(f["score"], errors="coerce").dropna().round(3) for f in ok]
    p_score = float(ks_2samp(*scores).pvalue)
    p_values = {"error_rate": float(p_errors), "label_mix": p_mix, "score": p_score}
    threshold = alpha / len(p_values)
    differs = [f"{name.replace('_', ' ')} (p={p:.1e})" for name, p in p_values.items() if p < threshold]
    difference = failed[0] / len(canary) - failed[1] / len(champion)
    verdict = (
        f"differs in {', '.join(differs)}"
        if differs
        else f"no difference found in error rate, label mix or scores (each p >= {threshold:.2g}) on "
        f"{len(canary)} canary and {len(champion)} champion predictions beside it"
    )
    return ArmTest(arm=CANARY, conclusive=True, verdict=verdict, p_values=p_values, error_rate_difference=difference)


def _shadow_test(champion: pd.DataFrame, shadow: pd.DataFrame, need: int) -> ArmTest:
    pairs = shadow[shadow["status"] == 200].merge(
        champion[champion["status"] == 200], on="request_id", suffixes=("_shadow", "_champion")
    )
    if short := _too_little(SHADOW, {"paired": len(pairs)}, need):
        return short
    same = int((pairs["label_shadow"].astype(str) == pairs["label_champion"].astype(str)).sum())
    low, high = _wilson(same, len(pairs))
    verdict = (
        f"predicts the champion's label on {same / len(pairs):.1%} [{low:.1%}, {high:.1%}] of "
        f"{len(pairs)} paired requests"
    )
    return ArmTest(
        arm=SHADOW,
        conclusive=True,
        verdict=verdict,
        paired=len(pairs),
        agreement=same / len(pairs),
        agreement_interval=(low, high),
    )


def compare_live(rows: pd.DataFrame, min_requests: int, alpha: float) -> LiveComparison:
    """Compare the arms logged in `rows` (inference-log rows of one window)."""
    rows = arm_rows(rows)
    by_arm = {arm: rows[rows["arm"] == arm] for arm in ARMS if (rows["arm"] == arm).any()}
    champion = by_arm.get(CHAMPION, rows.iloc[:0])
    tests = []
    if CANARY in by_arm:
        tests.append(_canary_test(_beside(champion, by_arm[CANARY]), by_arm[CANARY], min_requests, alpha))
    if SHADOW in by_arm:
        tests.append(_shadow_test(champion, by_arm[SHADOW], min_requests))
    return LiveComparison(
        since=rows["timestamp"].min() if len(rows) else None,
        until=rows["timestamp"].max() if len(rows) else None,
        rows=len(rows),
        min_requests=min_requests,
        alpha=alpha,
        arms=[_stats(arm, frame) for arm, frame in by_arm.items()],
        tests=tests,
    )


def plot(rows: pd.DataFrame, path: Path) -> Path:
    """Score distribution and label mix per arm, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = arm_rows(rows)
    ok = rows[rows["status"] == 200]
    arms = [arm for arm in ARMS if (ok["arm"] == arm).any()]
    fig, (scores, labels) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in arms:
        values = pd.to_numeric(ok.loc[ok["arm"] == arm, "score"], errors="coerce").dropna()
        scores.hist(values, bins=20, range=(0, 1), density=True, histtype="step", linewidth=2, label=arm)
    scores.set(title="Top score per prediction", xlabel="score", ylabel="density")
    scores.legend()
    mix = pd.crosstab(ok["label"].astype(str), ok["arm"], normalize="columns").reindex(columns=arms)
    mix.plot.bar(ax=labels, rot=45)
    labels.set(title="Predicted labels", xlabel="", ylabel="share of the arm's predictions")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(comparison: LiveComparison, rows: pd.DataFrame, out_dir: Path) -> Path:
    """compare_live.json, the plot, and a self-contained compare_live.html in `out_dir`; returns the HTML."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / JSON_FILE).write_text(json.dumps(comparison.model_dump(mode="json"), indent=1))
    figure = plot(rows, out_dir / PLOT_FILE) if comparison.arms else None
    cells = [
        [
            a.arm,
            ", ".join(a.versions),
            a.predictions,
            f"{a.error_rate:.2%} [{a.error_interval[0]:.2%}, {a.error_interval[1]:.2%}]",
            _number(a.latency_p50_ms),
            _number(a.latency_p95_ms),
            _number(a.score_mean, 3),
            _number(a.score_p10, 3),
        ]
        for a in comparison.arms
    ]
    header = ["arm", "versions", "predictions", "error rate [95%]", "p50 ms", "p95 ms", "mean score", "p10 score"]
    table = "".join(f"<th>{h}</th>" for h in header) + "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in cells
    )
    verdicts = "".join(
        f"<li class={'ok' if t.conclusive else 'short'}><b>{t.arm}</b> vs champion: {html.escape(t.verdict)}</li>"
        for t in comparison.tests
    )
    image = ""
    if figure is not None:
        image = f"<img src='data:image/png;base64,{base64.b64encode(figure.read_bytes()).decode()}'>"
    window = (
        f"{comparison.since:%Y-%m-%d %H:%M:%S} to {comparison.until:%Y-%m-%d %H:%M:%S} UTC"
        if comparison.since
        else "empty"
    )
    page = out_dir / HTML_FILE
    page.write_text(
        "<!doctype html><meta charset=utf-8><title>cvops: live comparison</title><style>body{font-family:sans-serif;"
        "margin:2em;max-width:70em}td,th{border:1px solid #ccc;padding:4px 8px}table{border-collapse:collapse}"
        ".short{color:#a60}img{max-width:100%}</style><h1>Live comparison of the served arms</h1>"
        f"<p>{comparison.rows} logged rows, {window}. Tests at family-wise alpha {comparison.alpha:g}; fewer than "
        f"{comparison.min_requests} predictions on a side is too little traffic to conclude.</p>"
        f"<table>{table}</table><ul>{verdicts or '<li>only the champion served: nothing to compare</li>'}</ul>"
        f"{image}",
        encoding="utf-8",
    )
    return page


def log_comparison(comparison: LiveComparison, out_dir: Path) -> None:
    """Metrics per arm and per test, and the report folder, on the active MLflow run."""
    import mlflow

    metrics: dict[str, float] = {"rows": comparison.rows}
    for a in comparison.arms:
        metrics |= {f"{a.arm}_predictions": a.predictions, f"{a.arm}_error_rate": a.error_rate}
        optional = {"latency_p50_ms": a.latency_p50_ms, "latency_p95_ms": a.latency_p95_ms, "score_mean": a.score_mean}
        metrics |= {f"{a.arm}_{name}": value for name, value in optional.items() if value is not None}
    for t in comparison.tests:
        metrics |= {f"{t.arm}_p_{name}": p for name, p in t.p_values.items()}
        if t.agreement is not None:
            metrics[f"{t.arm}_agreement"] = t.agreement
    mlflow.set_tags(
        {
            "pipeline": "compare-live",
            **{f"{a.arm}_versions": ",".join(a.versions) for a in comparison.arms},
            **{f"{t.arm}_verdict": t.verdict[:250] for t in comparison.tests},
        }
    )
    mlflow.log_metrics(metrics)
    mlflow.log_artifacts(str(out_dir), artifact_path="compare_live")


def compare_served_arms(
    project: Project, params: Params, since: datetime, min_requests: int | None
) -> tuple[LiveComparison, Path]:
    """`cvops models compare-live`: the comparison of the log's rows since `since`, its report in a new folder
    under reports/live, and an MLflow run with both."""
    import mlflow

    from cvops.registry.tracking import use_project_store
    from cvops.serving.inference_log import read_inference_log

    rows = read_inference_log(project.inference_log(params.serve), since=since)
    if rows.empty:
        raise DataError(
            f"no predictions logged since {since:%Y-%m-%d %H:%M} UTC: serve some traffic "
            "(`cvops serve`, `cvops traffic`) or widen --since"
        )
    comparison = compare_live(rows, min_requests or params.monitor.min_samples, params.monitor.false_alarm_rate)
    out_dir = project.reports_dir / "live" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    page = write_report(comparison, rows, out_dir)
    experiment = use_project_store(project, params.mlflow.experiment)
    with mlflow.start_run(experiment_id=experiment, run_name="compare-live"):
        log_comparison(comparison, out_dir)
    return comparison, page
