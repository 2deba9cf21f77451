"""Retake the README's screenshots of the team stack's MLflow UI and ZenML dashboard (headless Chromium).

Starts a throwaway team stack (the code of `make team-up`), trains digits on it as the trainer, promotes
version 1 as the reviewer, and photographs what a signed-in user sees: the MLflow model version as the
viewer, and the pipeline run's DAG in the ZenML dashboard as its admin. Chromium is driven over its DevTools
protocol: it signs in to the ZenML dashboard through its login form, sends the viewer's credentials to
MLflow as the HTTP basic-auth header a browser sends after its password prompt, and takes each picture once
the page shows what it is for, not after a fixed wait. The stack and its databases are dropped at the end.

Usage: python docs/screenshots.py [--chromium /usr/bin/chromium]   (Debian: apt-get install chromium)
Writes docs/team-mlflow-version.png and docs/team-zenml-run.png.
"""

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import websocket

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path.insert(0, str(REPO))

from bench.team import SMALL, checkout, cvops  # noqa: E402  (also takes the process offline)
from cvops.stack.team import TeamStack, read_env, zenml_admin_token  # noqa: E402
from cvops.stack.web import http_json  # noqa: E402

MODEL = "cvops-classifier"
WIDTH, HEIGHT = 1400, 860
READY_SECONDS = 90


class Browser:
    """One headless Chromium page driven over the DevTools protocol."""

    def __init__(self, chromium: str, profile: Path) -> None:
        self.process = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.socket = websocket.create_connection(self._page(chromium, profile), timeout=60)
        except BaseException:
            self.process.kill()  # no browser outlives a failed start
            raise
        self.calls = 0

    def _page(self, chromium: str, profile: Path) -> str:
        """The DevTools address of the browser's page, once it is up."""
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + READY_SECONDS
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{chromium} did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
            page = next(target for target in json.load(answer) if target["type"] == "page")
        return str(page["webSocketDebuggerUrl"])

    def call(self, method: str, **params: object) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.calls:
                if "error" in message:
                    raise SystemExit(f"Chromium refused {method}: {message['error']}")
                return message["result"]

    def wait(self, ready: str, what: str) -> None:
        """Until the JavaScript expression `ready` is true in the page."""
        deadline = time.monotonic() + READY_SECONDS
        while not self.call("Runtime.evaluate", expression=ready, returnByValue=True)["result"].get("value"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the page did not show {what} within {READY_SECONDS} s")
            time.sleep(0.5)

    def sign_in(self, login_url: str, user: str, password: str) -> None:
        """Type into a login form and press Enter, as a person would; wait until the page leaves it."""
        self.call("Page.navigate", url=login_url)
        self.wait("!!document.querySelector('input[type=password]')", "a login form")
        for selector, text in [("input:not([type=password])", user), ("input[type=password]", password)]:
            self.call("Runtime.evaluate", expression=f"document.querySelector('{selector}').focus()")
            self.call("Input.insertText", text=text)
        self.call(
            "Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13, text="\r"
        )
        self.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)
        self.wait("!location.pathname.startsWith('/login')", "the signed-in dashboard")

    def photograph(self, url: str, ready: str, out: Path) -> None:
        """Open `url`, wait until the JavaScript `ready` is true, save a PNG."""
        self.call("Page.navigate", url=url)
        self.wait(ready, f"{url} ready ({ready})")
        time.sleep(1)  # the content is there; let its last frame paint
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(f"wrote {out.relative_to(REPO)}")

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait()


def text_shows(*needles: str, absent: str = "") -> str:
    """A JavaScript test that the page's text shows every needle (and not `absent`)."""
    test = " && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in needles)
    return f"{test} && !document.body.innerText.includes({json.dumps(absent)})" if absent else test


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    chromium = parser.parse_args().chromium
    scratch = Path(tempfile.mkdtemp(prefix="cvops-screenshots-"))
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
        shutil.rmtree(scratch, ignore_errors=True)


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
        )
    with browser_in(chromium, scratch / "chromium-zenml") as browser:
        browser.sign_in(f"{zenml}/login", "admin", admin_password)
        browser.photograph(
            f"{zenml}/projects/default/runs/{runs['items'][0]['id']}",
            text_shows("register_model", "completed", absent="Calculating DAG"),
            DOCS / "team-zenml-run.png",
        )


@contextmanager
def browser_in(chromium: str, profile: Path) -> Iterator[Browser]:
    profile.mkdir(parents=True)
    browser = Browser(chromium, profile)
    try:
        browser.call("Page.enable")
        browser.call("Network.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False
        )
        yield browser
    finally:
        browser.close()


if __name__ == "__main__":
    main()
