"""A live MJPEG-over-HTTP stream on 127.0.0.1, as IP cameras serve one (multipart/x-mixed-replace, a JPEG per
part), at a frame rate of its own, for `cvops run video` to read as FFmpeg reads a camera's. The first
connection is dropped after `drop_after` frames, as a camera's server that restarts drops its clients, and
the next `refuse` connections are answered 503, as it answers while it starts again. With `credentials`, a
request without them is answered 401 with a Basic challenge, as a camera answers, and not counted."""

import base64
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from tests.server import free_port


@contextmanager
def mjpeg_stream(
    frames: list[Image.Image], fps: float, drop_after: int, refuse: int = 0, credentials: tuple[str, str] | None = None
) -> Iterator[tuple[str, list[float]]]:
    """The stream's address, and the times its connections were opened; `frames` loop forever."""
    jpegs = []
    for image in frames:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    connections: list[float] = []
    expected = "Basic " + base64.b64encode(":".join(credentials).encode()).decode() if credentials else None

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if credentials and self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            connections.append(time.monotonic())
            first = len(connections) == 1
            if 1 < len(connections) <= 1 + refuse:
                self.send_error(503, "starting")
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            start, sent = time.monotonic(), 0
            while not (first and sent == drop_after):
                part = jpegs[sent % len(jpegs)]
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(part)}\r\n\r\n".encode()
                try:
                    self.wfile.write(head + part + b"\r\n")
                    self.wfile.flush()
                except OSError:  # the client went away
                    return
                sent += 1
                time.sleep(max(0.0, start + sent / fps - time.monotonic()))  # the camera's own clock
            self.close_connection = True  # the drop

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Camera)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/stream.mjpg", connections
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
