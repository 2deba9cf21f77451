"""Open every page of the built docs site in headless Chromium, as a reader would (`make docs` runs it after
the build): each page loads with no console error and no uncaught exception, every picture shows, and every
internal link resolves: to a page or file of the site, and to an anchor that page has.

Usage: python docs/check_site.py [SITE_DIR] [--chromium /usr/bin/chromium]   (SITE_DIR: site/)
Exits 1 naming each problem, page by page.
"""

import argparse
import functools
import json
import re
import shutil
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from docs.browser import browser_in  # noqa: E402

# What a page reports about itself once loaded: pictures that did not show, and where its links go
INSPECT = """JSON.stringify({
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
})"""
ID = re.compile(r"""\bid=["']([^"']+)["']""")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def target(site: Path, path: str) -> Path | None:
    """The file a URL path of the site serves, as a static server does (a folder: its index.html)."""
    found = site / unquote(path).lstrip("/")
    if found.is_dir():
        found = found / "index.html"
    return found if found.is_file() else None


def problems_of(events: list[dict], inspected: dict, site: Path, origin: str) -> list[str]:
    found = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"uncaught exception: {params['exceptionDetails'].get('text', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            found.append(
                "console error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"console error: {params['entry']['text']} {params['entry'].get('url', '')}".strip())
    found += [f"picture does not show: {src}" for src in inspected["broken"]]
    for link in inspected["links"]:
        parts = urlsplit(link)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            continue  # another site: not this check's
        page = target(site, parts.path)
        if page is None:
            found.append(f"link to a missing page or file: {parts.path}")
        elif parts.fragment and page.suffix == ".html" and unquote(parts.fragment) not in ID.findall(page.read_text()):
            found.append(f"link to a missing anchor: {parts.path}#{parts.fragment}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", type=Path, default=REPO / "site")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    site: Path = args.site.resolve()
    if not (site / "index.html").is_file():
        raise SystemExit(f"{site} holds no built site: run `make docs` (mkdocs build) first")
    if not shutil.which(args.chromium):
        raise SystemExit(f"no Chromium at {args.chromium}: `make system-deps` installs it (Debian: chromium)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    pages = sorted(site.rglob("*.html"))
    failed: dict[str, list[str]] = {}
    try:
        with (
            tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile,  # Chromium's helpers may still write
            browser_in(args.chromium, Path(profile) / "p") as browser,
        ):
            browser.call("Runtime.enable")
            browser.call("Log.enable")
            for page in pages:
                url = f"{origin}/{page.relative_to(site).as_posix()}"
                browser.events.clear()
                browser.call("Page.navigate", url=url)
                browser.wait("document.readyState === 'complete'", f"{url} loaded")
                found = browser.call("Runtime.evaluate", expression=INSPECT, returnByValue=True)["result"]["value"]
                problems = problems_of(browser.events, json.loads(found), site, origin)
                if problems:
                    failed[str(page.relative_to(site))] = problems
    finally:
        server.shutdown()
    for page, problems in failed.items():
        for problem in problems:
            print(f"{page}: {problem}", file=sys.stderr)
    if failed:
        raise SystemExit(1)
    print(f"checked {len(pages)} pages in Chromium: no console error, every picture and internal link resolves")


if __name__ == "__main__":
    main()
