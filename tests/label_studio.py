"""A real Label Studio 1.23 server, from its own virtual environment (`make label-studio`), on a free loopback
port, serving local files from a document root: what `cvops labels studio` and `labels pull` talk to."""

import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.cli import clean_env
from tests.conftest import REPO
from tests.server import free_port

EXECUTABLE = REPO / ".venv-label-studio" / "bin" / "label-studio"
LABELLER = "rita@example.com"


class LabelStudio:
    """Started at once (its first start migrates its database: tens of seconds), ready after `wait()`; its user
    is LABELLER with a legacy token, `token`."""

    def __init__(self, data_dir: Path, document_root: Path) -> None:
        assert EXECUTABLE.is_file(), f"{EXECUTABLE} is missing: run `make label-studio` (make test does)"
        self.port, self.token = free_port(), secrets.token_hex(20)
        self.url = f"http://127.0.0.1:{self.port}"
        self.document_root = document_root
        # cvops writes image URLs relative to the document root it is told, as the server serves them
        self.document_env = {"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root)}
        self.log = data_dir / "label-studio.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = clean_env() | self.document_env | {"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true"}
        command = [str(EXECUTABLE), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir), "--username", LABELLER, "--password", secrets.token_hex(8)]
        command += ["--user-token", self.token, "--enable-legacy-api-token"]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait(self, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"Label Studio was not up within {seconds} s"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
