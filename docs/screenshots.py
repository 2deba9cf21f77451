"""Retake the docs' screenshots in headless Chromium (docs/browser.py), from real runs.

Local (a project on the default stack): digits trained twice (version 1 promoted, version 2 the challenger),
served with version 2 as a canary under demo traffic with true labels sent back, then photographed: the
MLflow UI comparing the two runs, version 2's model card, the data validation report and the compare-live
report. Team (a throwaway team stack, the code of `cvops team up`): digits trained as the trainer, version 1
promoted as the reviewer, then the MLflow model version as the viewer sees it (tags, aliases, who approved),
and the pipeline run's DAG in the ZenML dashboard as its admin. Each picture is taken once the page shows what
it is for, never after a fixed wait; every server started stops, and the team stack's databases are dropped.

Usage: python docs/screenshots.py [--only local|team] [--chromium /usr/bin/chromium]
Writes docs/mlflow-compare.png, model-card.png, validation-report.png, compare-live.png,
team-mlflow-version.png and team-zenml-run.png.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path.insert(0, str(REPO))

from bench.team import SMALL, checkout, cvops  # noqa: E402  (also takes the process offline)
from cvops.stack.team import TeamStack, free_port, read_env, zenml_admin_token  # noqa: E402
from cvops.stack.web import http_json  # noqa: E402
from docs.browser import basic, browser_in, text_shows  # noqa: E402

MODEL = "cvops-classifier"
# The MLflow UI opens its Assistant chat beside every page: closed, by its own button, before a picture
ASSISTANT_CLOSE = "document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]')"
NO_ASSISTANT = (f"{ASSISTANT_CLOSE}?.click()", f"!{ASSISTANT_CLOSE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--only", choices=["local", "team"], help="Take one set of pictures only.")
    parser.add_argument("--project", type=Path, help="Photograph this local project again (made by a run with --keep).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder (its path is printed).")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cvops-screenshots-"))
    try:
        if args.only in (None, "local"):
            local_pictures(args.chromium, scratch / "local", args.project)
        if args.only in (None, "team"):
            team_pictures(args.chromium, scratch / "team")
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def background(root: Path, *args: str) -> Iterator[int]:
    """`cvops ARGS --port P` in its own process group on a free port, until the block ends: P."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CVOPS_", "MLFLOW_", "ZENML_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "cvops.cli", *args, "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield port
    finally:
        process.terminate()  # cvops stops what it started (the BentoML or MLflow server) on SIGTERM
        process.wait(timeout=60)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(url: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not answers(url):
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {seconds:.0f} s")
        time.sleep(0.5)


def local_runs(root: Path) -> Path:
    """Digits trained twice (version 1 promoted, version 2 the challenger), version 2 served as a canary under
    demo traffic with true labels sent back, and compared live: the compare-live report."""
    cvops(root, {}, "init")
    cvops(root, {}, "run", "training", *SMALL)
    cvops(root, {}, "models", "promote", "1", "--reviewer", "alice", "--note", "first digits model")
    cvops(root, {}, "run", "training", *SMALL, "-S", "train.epochs=3", "-S", "train.lr=0.002")
    with background(root, "serve", "--canary", "challenger", "--canary-fraction", "0.5") as port:
        wait_for(f"http://127.0.0.1:{port}/readyz")
        url = f"http://127.0.0.1:{port}"
        cvops(root, {}, "traffic", "--n", "400", "--url", url, "--feedback", "1.0", "--truth-out", "truth.csv")
    _, said = cvops(root, {}, "models", "compare-live", "--since", "1h", "--min-requests", "50")
    return Path(said.split("report: ")[-1].strip().splitlines()[0])


def local_pictures(chromium: str, scratch: Path, project: Path | None = None) -> None:
    """With `project` (a folder this function made before, kept with --keep), its runs are photographed again."""
    root = project or checkout(scratch / "project")
    live = local_runs(root) if project is None else max((root / "reports" / "live").rglob("compare_live.html"))
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    runs = [client.get_model_version(MODEL, v).run_id for v in ("1", "2")]
    experiment = client.get_run(runs[0]).info.experiment_id
    card = client.get_model_version(MODEL, "2").tags["model_card"]
    with background(root, "ui") as port, browser_in(chromium, scratch / "chromium") as browser:
        wait_for(f"http://127.0.0.1:{port}/health")
        query = {"runs": runs, "experiments": [experiment]}
        compare = f"http://127.0.0.1:{port}/#/compare-runs?" + "&".join(
            f"{key}={urllib.parse.quote(json.dumps(value, separators=(',', ':')))}" for key, value in query.items()
        )
        browser.photograph(
            compare,
            text_shows("Parallel Coordinates Plot", "Run details"),
            DOCS / "mlflow-compare.png",
            tidy=NO_ASSISTANT,
        )
        browser.photograph(card, text_shows("Gate"), DOCS / "model-card.png")
        validation = (root / "reports" / "validation.html").as_uri()
        browser.photograph(validation, text_shows("passed"), DOCS / "validation-report.png")
        browser.photograph(live.as_uri(), text_shows("canary"), DOCS / "compare-live.png")


def team_pictures(chromium: str, scratch: Path) -> None:
    stack = TeamStack(scratch / ".team")
    env = stack.up(MODEL, say=print)
    try:
        users = read_env(stack.users_file)
        root = checkout(scratch / "checkout")
        cvops(root, env, "init", "--stack", "team")
        cvops(root, env, "run", "training", *SMALL)
        reviewer = {
            "MLFLOW_TRACKING_USERNAME": users["CVOPS_REVIEWER_USER"],
            "MLFLOW_TRACKING_PASSWORD": users["CVOPS_REVIEWER_PASSWORD"],
        }
        cvops(root, env | reviewer, "models", "promote", "1", "--note", "gate and slices reviewed")
        photograph_both(
            chromium, scratch, env, stack, basic(users["CVOPS_VIEWER_USER"], users["CVOPS_VIEWER_PASSWORD"])
        )
    finally:
        stack.down(say=lambda line: None, drop=True)


def photograph_both(chromium: str, scratch: Path, env: dict[str, str], stack: TeamStack, viewer: str) -> None:
    zenml, admin_password = env["ZENML_STORE_URL"], stack.config().zenml_admin_password
    token = zenml_admin_token(stack.config(), zenml)  # the admin skips the dashboard's first-login survey:
    surveyed = {"email_opted_in": False, "user_metadata": {"finished_onboarding_survey": True}}
    http_json("PUT", f"{zenml}/api/v1/current-user", surveyed, token=token)
    _, runs = http_json("GET", f"{zenml}/api/v1/runs?sort_by=desc:created&size=1", token=token)
    with browser_in(chromium, scratch / "chromium-mlflow") as browser:  # MLflow asks by HTTP basic auth
        browser.call("Network.setExtraHTTPHeaders", headers={"Authorization": viewer})
        browser.photograph(
            f"{env['MLFLOW_TRACKING_URI']}/#/models/{MODEL}/versions/1",
            text_shows("approved_by", "champion"),
            DOCS / "team-mlflow-version.png",
            tidy=NO_ASSISTANT,
        )
    with browser_in(chromium, scratch / "chromium-zenml") as browser:
        browser.sign_in(f"{zenml}/login", "admin", admin_password)
        browser.photograph(
            f"{zenml}/projects/default/runs/{runs['items'][0]['id']}",
            text_shows("register_model", "completed", absent="Calculating DAG"),
            DOCS / "team-zenml-run.png",
        )


if __name__ == "__main__":
    main()
