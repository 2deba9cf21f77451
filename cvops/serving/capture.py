"""Captured request images: the raw bytes of the answers `serve.capture` selects, kept for labelling.

Keys are `<UTC day>/<request_id>.<ext>` under the store (a folder, or an s3:// prefix with the keys boto3
reads); the inference-log row of a captured answer names its key in `capture`.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

CAPTURE = "capture"  # the inference-log column naming a captured image's key
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp"}


class CaptureStore:
    def __init__(self, location: str) -> None:
        import fsspec  # only where capture is on

        self.location = location
        self.fs, self.root = fsspec.core.url_to_fs(location)

    @staticmethod
    def key(request_id: str, image_format: str) -> str:
        return f"{datetime.now(UTC):%Y-%m-%d}/{request_id}.{EXTENSIONS.get(image_format, 'bin')}"

    def put(self, key: str, data: bytes) -> None:
        """Written under a temporary name, then renamed: a key that exists holds the whole image."""
        path = f"{self.root}/{key}"
        self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
        self.fs.pipe_file(f"{path}.partial", data)
        self.fs.mv(f"{path}.partial", path)

    def keep(self, request_id: str, image_format: str, data: bytes) -> str:
        """Store a request's image; its key."""
        key = self.key(request_id, image_format)
        self.put(key, data)
        return key

    def read(self, key: str) -> bytes:
        return bytes(self.fs.cat_file(f"{self.root}/{key}"))

    def days(self) -> Iterator[tuple[str, list[str]]]:
        """(day, its keys) for each day folder, oldest first."""
        if not self.fs.exists(self.root):
            return
        for folder in sorted(self.fs.ls(self.root, detail=False)):
            day = folder.rstrip("/").rpartition("/")[2]
            keys = [f"{day}/{path.rpartition('/')[2]}" for path in self.fs.ls(folder, detail=False)]
            yield day, sorted(keys)

    def delete_day(self, day: str) -> None:
        self.fs.rm(f"{self.root}/{day}", recursive=True)
