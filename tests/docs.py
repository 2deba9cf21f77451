"""The docs' shell blocks, run as a user runs them: every ```bash block of a page in order, in one bash session
(what one block does with `cd`, `export` or `. .team/env` holds for the next), with `set -e -o pipefail`, so a
command that fails fails its test. A block whose first line is `# not run here: <why>` is the only kind skipped.
What a test may change is the environment the session starts with (`DOCS_ENV` names each variable), never a
command."""

import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.cli import clean_env

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NOT_RUN = "# not run here:"
# The executed pages' folders: every shell block there runs in a test or says why it cannot
EXECUTED = ("getting-started", "how-to")
# The pages that run, and the fixture or test that runs each (the others' blocks all say why they cannot)
RUN_BY = {
    "getting-started/install.md": "tests/integration/test_docs_guides.py (the check; the installs say why not)",
    "getting-started/first-model.md": "tests/conftest.py: trained_digits, the session's trained project",
    "getting-started/your-images.md": "tests/integration/test_docs.py",
    "getting-started/review.md": "tests/integration/test_docs.py, then serve.md in the same shell",
    "getting-started/serve.md": "tests/integration/test_docs.py, after review.md",
    "how-to/ml-engineer.md": "tests/integration/test_docs_guides.py: test_how_to_guide",
    "how-to/data-scientist.md": "tests/integration/test_docs_guides.py: test_the_data_scientists_guide_...",
    "how-to/reviewer.md": "tests/integration/test_docs_guides.py: test_how_to_guide, then troubleshooting.md",
    "how-to/operator.md": "tests/integration/test_docs.py: test_the_operators_guide",
    "how-to/video.md": "tests/integration/test_video.py: test_each_digit_keeps_one_track_id_from_start_to_end",
    "how-to/troubleshooting.md": "tests/integration/test_docs_guides.py: test_how_to_guide, after reviewer.md",
    "how-to/team-stack.md": "tests/team/conftest.py: team, the session's team stack",
}
# What the tests set in a docs session, and why; a user's terminal has their own values
DOCS_ENV = {
    "HOME": "a scratch folder, holding `images/` (a folder per class), `scenes/` (a COCO set) and `videos/` (two "
    "digit-tracks videos) for the pages that read `~/images`, `~/scenes` and `~/videos`",
    "CVOPS_OVERLAY": "the small digits run (overlays/digits.yaml), so a page's plain `cvops run training` takes "
    "a minute",
    "GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL, GIT_COMMITTER_NAME, GIT_COMMITTER_EMAIL": "who commits, as a user's git "
    "configuration says",
    "USER": 'who you are, as your login sets it (`--reviewer "$USER"` on a local stack)',
    "PATH": "this environment's bin folder first (its cvops)",
}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def runs(self) -> bool:
        return self.language == "bash" and not self.text.startswith(NOT_RUN)

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, in order (blocks indented under a list item or admonition too)."""
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if match := FENCE.match(lines[i]):
            indent, start = len(match[1]), i
            body = []
            i += 1
            while i < len(lines) and not (lines[i].strip() == "```" and FENCE.match(lines[i])):
                body.append(lines[i][indent:])
                i += 1
            found.append(Block(page, start + 1, match[2], "\n".join(body).strip() + "\n"))
        i += 1
    return found


def shell_blocks(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.language in {"bash", "sh", "shell", "console"}]


class Shell:
    """One bash session: a user's terminal. Each block is sourced from a file with stdin closed (a command that
    reads stdin sees nothing, never the next commands); background jobs (`cvops serve &`) belong to the session,
    and `close` (or leaving its `with` block) ends them with the session's process group."""

    def __init__(self, cwd: Path, env: dict[str, str], scratch: Path, bin_dir: Path | None = None) -> None:
        """A session in `cwd` (made if missing) with `env` over the clean environment, the bin folder of this
        Python (or `bin_dir`: another environment's cvops) first on PATH, its block files in `scratch`."""
        self.scratch, self.count, self.transcript = scratch, 0, ""
        scratch.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        first = bin_dir or Path(sys.executable).parent
        full = clean_env() | {"PATH": f"{first}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(first.parent)}
        full |= env
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=full,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._send("set -e -o pipefail\n")

    def __enter__(self) -> "Shell":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def run(self, block: Block, timeout: float = 900) -> str:
        """Run `block`; what it printed (stdout and stderr). A failing command fails with the block's place."""
        self.count += 1
        script = self.scratch / f"block-{self.count}.sh"
        script.write_text(block.text)
        done = f"__block_done_{uuid.uuid4().hex}__"
        self._send(f". {script} < /dev/null\necho {done}\n")
        printed = self._read_until(done, timeout, block)
        self.transcript += f"$ # {block}\n{printed}"
        return printed

    def run_page(self, page: Path, after: str | None = None, until: str | None = None) -> list[tuple[Block, str]]:
        """The runnable blocks of `page` in order, each with what it printed: all of them, or those after the
        first block holding the text `after` and up to (with) the first one holding `until`."""
        runnable = [block for block in shell_blocks(page) if block.runs]
        if after is not None:
            runnable = runnable[[after in block.text for block in runnable].index(True) + 1 :]
        if until is not None:
            runnable = runnable[: [until in block.text for block in runnable].index(True) + 1]
        return [(block, self.run(block)) for block in runnable]

    def run_inline(self, commands: str) -> str:
        """Commands of the test's own (not the docs'), in the session: what they printed."""
        return self.run(Block(self.scratch, 0, "bash", commands + "\n"))

    def cwd(self) -> Path:
        """The session's working folder now (where the page's `cd` left it)."""
        return Path(self.run_inline("pwd").strip().splitlines()[-1])

    def _read_until(self, marker: str, timeout: float, block: Block) -> str:
        assert self.process.stdout is not None
        output, deadline = b"", time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while (end := output.find(marker.encode())) < 0:
                if time.monotonic() > deadline:
                    self.close()
                    raise AssertionError(f"{block}: no end within {timeout:.0f} s\n{block.text}\n{_tail(output)}")
                chunk = os.read(self.process.stdout.fileno(), 65536) if selector.select(timeout=1) else None
                output += chunk or b""
                # the shell ended (`set -e` saw a command fail), though a job it started may still hold the pipe
                if chunk == b"" or (chunk is None and self.process.poll() is not None):
                    code = self.process.wait()
                    self.close()
                    raise AssertionError(f"{block}: a command failed (exit {code})\n{block.text}\n{_tail(output)}")
        return output[:end].decode(errors="replace")

    def close(self) -> None:
        """End the session and everything it started (its process group), politely first."""
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and (self.process.poll() is None or _group_alive(self.process.pid)):
                time.sleep(0.2)  # (the shell reaped first: a dead child is a member of its group until then)
            if not _group_alive(self.process.pid):
                break
        self.process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(output: bytes) -> str:
    return output.decode(errors="replace")[-4000:]


def docs_env(home: Path) -> dict[str, str]:
    """The environment of a docs session (DOCS_ENV says why each is set)."""
    who = {
        f"GIT_{role}_{field}": value
        for role in ("AUTHOR", "COMMITTER")
        for field, value in (("NAME", "Docs Reader"), ("EMAIL", "reader@example.com"))
    }
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "USER": "reader", "CVOPS_OVERLAY": str(REPO / "overlays" / "digits.yaml")} | who


def assert_every_mlflow_name_is_documented(root: Path, model: str) -> None:
    """Every metric, tag, alias and artifact folder that the training wrote is in the docs' reference
    (cvops/registry/names.py, rendered as reference/mlflow.md)."""
    from mlflow.tracking import MlflowClient

    from cvops.registry.names import ALIASES, ARTIFACTS, NAMES, RUN_TAGS, VERSION_TAGS, undocumented

    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    version = client.get_model_version(model, "1")
    run = client.get_run(version.run_id)
    folders = [f"{item.path}/" for item in client.list_artifacts(run.info.run_id) if item.is_dir]
    assert undocumented(list(run.data.metrics), NAMES["Training runs: metrics"]) == []
    assert undocumented([tag for tag in run.data.tags if not tag.startswith("mlflow.")], RUN_TAGS) == []
    assert undocumented(list(version.tags), VERSION_TAGS) == []
    assert undocumented(list(version.aliases), ALIASES) == [] and undocumented(folders, ARTIFACTS) == []
