"""Headless Chromium driven over its DevTools protocol: the docs' screenshots (docs/screenshots.py) and the check
of the built site (docs/check_site.py). Debian: `apt-get install chromium` (`make system-deps` does)."""

import base64
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websocket

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
        self.events: list[dict[str, Any]] = []  # what the page reported (console messages, exceptions, log entries)

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
        """Send one DevTools command and return its result; the events that arrive meanwhile are kept."""
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.calls:
                if "error" in message:
                    raise SystemExit(f"Chromium refused {method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

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

    def photograph(self, url: str, ready: str, out: Path, tidy: tuple[str, str] | None = None) -> None:
        """Open `url`, wait until the JavaScript `ready` is true, save a PNG. `tidy`: JavaScript that clears
        something out of the picture, and the test that it is gone."""
        self.call("Page.navigate", url=url)
        self.wait(ready, f"{url} ready ({ready})")
        if tidy:
            self.call("Runtime.evaluate", expression=tidy[0])
            self.wait(tidy[1], f"{url} tidied ({tidy[1]})")
        time.sleep(1)  # the content is there; let its last frame paint
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(f"wrote {out}")

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
