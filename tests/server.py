"""`cvops serve` as a user starts it: its own process group on a free loopback port, ready when /readyz
answers 200, with helpers to send JSON, multipart and truncated requests."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psutil

from tests.cli import clean_env


@contextmanager
def stopped_on_exit(process: subprocess.Popen) -> Iterator[list[psutil.Process]]:
    """Whatever a test does, `process` (started in its own session), its descendants and the workers the test
    lists in the yielded list are gone afterwards: a failing test leaks no server."""
    workers: list[psutil.Process] = []
    try:
        yield workers
    finally:
        # `cvops serve` runs its server in a process group of its own: a SIGKILL to cvops's group leaves it
        # running, so everything below `process` goes too
        with suppress(psutil.NoSuchProcess):
            workers += psutil.Process(process.pid).children(recursive=True)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        for worker in workers:
            with suppress(psutil.NoSuchProcess):
                worker.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cvops serve` in its own process group, ready when /readyz answers 200."""

    def __init__(
        self,
        root: Path,
        *args: str,
        token: str | None = None,
        env: dict[str, str] | None = None,
        python: Path | str = sys.executable,  # another environment's: cvops as that one installed it
    ) -> None:
        self.port = free_port()
        env = clean_env() | (env or {}) | ({"CVOPS_API_TOKEN": token} if token else {})
        self.log = root / f"serve-{self.port}.log"
        with self.log.open("w") as log:  # a file, not a pipe: nobody reads a pipe, and a full one stalls the server
            self.process = subprocess.Popen(
                [python, "-m", "cvops.cli", "serve", "--port", str(self.port), *args],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the service was not ready within 120 s"
            time.sleep(0.5)

    def request(self, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict | str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def post_bytes(self, path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        """POST `body`; (HTTP status, the answer's content type, its bytes): for answers that are not JSON."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()

    def get(self, path: str) -> tuple[int, dict | str]:
        return self.request(path, None, {})

    def post_json(self, path: str, payload: object, token: str | None = None) -> tuple[int, dict | str]:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        return self.request(path, json.dumps(payload).encode(), headers)

    def post_files(self, path: str, field: str, files: list[tuple[str, bytes]]) -> tuple[int, dict | str]:
        boundary = "cvopsboundary7MA4YWxkTrZu0gW"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
            for name, data in files
        ]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request(path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def declare_body(self, path: str, length: int) -> tuple[int, dict]:
        """Announce a body of `length` bytes and send only its start: the answer must not wait for the rest."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                f"Content-Length: {length}\r\n\r\n".encode()
                + b"--b\r\n"
            )
            response = b""
            while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


class Webhook:
    """A local HTTP endpoint that records the JSON bodies POSTed to it (an alert receiver)."""

    def __init__(self) -> None:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> "Webhook":
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
