"""Benchmark: a photo's way to the model's input. The milliseconds to decode a JPEG and resize it to the model's
input, by `prepare.decoder` (full: every pixel; draft: scaled down by libjpeg while decoding, Pillow's
`Image.draft`), against OpenCV's reduced decode (`IMREAD_REDUCED_COLOR_2/4/8` and an area resize), the peer a
user would otherwise pick; and how far each one's pixels are from the full decode's.

The photos are photo-like (tests/images.py: gradients, hard-edged shapes, sensor noise), JPEG quality 90, 12, 8
and 2 megapixels, with an EXIF rotation as phones write them. cvops's two ways are the service's own code
(cvops.serving.predictor.decode_image); the ways run in turn, photo by photo, and the table has the median.

The service's other kind of image, a small PNG (ELPV's are 300 x 300, grey), grey and colour: decoded by Pillow
and resized by cvops (`resize_image`, without the service's checks and image statistics), against OpenCV's
decode with the same resize (the same pixels), and OpenCV's decode and bilinear resize; the columns compare
with the first way.

Usage: python bench/decoding.py [--reps 15]
Writes bench/results/decoding.json and prints a markdown table.
"""

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cvops.data.preprocess import DRAFT_MARGIN, resize_image  # noqa: E402
from cvops.serving.predictor import decode_image  # noqa: E402
from tests.images import encoded, photo  # noqa: E402

PHOTOS = {"12 MP": (4000, 3000), "8 MP": (3264, 2448), "2 MP": (1600, 1200)}
SIZES = (128, 224)


def with_rotation(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(image, "JPEG", quality=90, exif=exif)


def opencv(data: bytes, size: int) -> np.ndarray:
    """OpenCV's fastest way: the largest reduced decode that keeps DRAFT_MARGIN x the input, then an area resize
    (IMREAD_REDUCED_* ignores the EXIF orientation: turned by hand, as a user would have to)."""
    with Image.open(io.BytesIO(data)) as header:  # the size from the header: no decoding
        smallest = min(header.size)
    factor = next((f for f in (8, 4, 2) if smallest // f >= DRAFT_MARGIN * size), 1)
    flag = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}
    image = cv2.imdecode(
        np.frombuffer(data, np.uint8), flag.get(factor, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    )
    assert image is not None
    image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    return cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def pillow_png(data: bytes, size: int) -> np.ndarray:
    """cvops's way without its checks and image statistics: Pillow's decode, then cvops's resize."""
    with Image.open(io.BytesIO(data)) as image:
        return resize_image(image, size, "stretch")


def opencv_decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def opencv_png(data: bytes, size: int) -> np.ndarray:
    """OpenCV's PNG decode and its bilinear resize (a grey file resized as one band, as cvops does)."""
    image = cv2.resize(opencv_decode(data), (size, size), interpolation=cv2.INTER_LINEAR)
    return np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image


Way = Callable[[bytes, int], np.ndarray]
WAYS: dict[str, Way] = {
    "cvops full": lambda data, size: decode_image(data, size, 10**9, "stretch", "full").pixels,
    "cvops draft": lambda data, size: decode_image(data, size, 10**9, "stretch", "draft").pixels,
    "OpenCV reduced": opencv,
}
PNG_WAYS: dict[str, Way] = {
    "Pillow": pillow_png,
    "OpenCV decode, cvops resize": lambda data, size: resize_image(
        Image.fromarray(opencv_decode(data)), size, "stretch"
    ),
    "OpenCV": opencv_png,
}
# The service's other kind of image: ELPV's 300 x 300 grey PNG files, and a colour one of the same size
PNGS = {"300x300 grey PNG": "L", "300x300 RGB PNG": "RGB"}


def compare(name: str, data: bytes, size: int, ways: dict[str, Way], reps: int) -> list[dict[str, object]]:
    """Each way's median time over `reps` (in turns), and its pixels' difference from the first way's."""
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(reps):
        for way, decode in ways.items():
            start = time.perf_counter()
            decode(data, size)
            seconds[way].append(time.perf_counter() - start)
    first = next(iter(ways))
    full, base = ways[first](data, size).astype(int), statistics.median(seconds[first]) * 1000
    rows = []
    for way, decode in ways.items():
        ms = statistics.median(seconds[way]) * 1000
        differs = np.abs(decode(data, size).astype(int) - full)
        rows.append(
            {
                "photo": name,
                "input": size,
                "way": way,
                "ms": round(ms, 2),
                "speedup_vs_full": round(base / ms, 2),
                "mean_abs_diff": round(float(differs.mean()), 3),
                "p99_abs_diff": float(np.percentile(differs, 99)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="times each photo is decoded by each way")
    args = parser.parse_args()
    rows = []
    for name, (width, height) in PHOTOS.items():
        data = with_rotation(photo(width, height, seed=width))
        rows += [row for size in SIZES for row in compare(f"{name} ({width}x{height})", data, size, WAYS, args.reps)]
    for name, mode in PNGS.items():
        data = encoded(photo(300, 300, seed=300).convert(mode), "PNG")
        rows += [row for size in SIZES for row in compare(name, data, size, PNG_WAYS, args.reps * 10)]
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenCV {cv2.__version__}"
    )
    out = REPO / "bench" / "results" / "decoding.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "reps": args.reps, "rows": rows}, indent=2) + "\n")
    print(f"decode + resize, median of {args.reps} (a PNG: {args.reps * 10}); {machine}\n")
    print("| image | input | way | ms | x the first way | mean abs diff | p99 abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['photo']} | {r['input']} | {r['way']} | {r['ms']} | {r['speedup_vs_full']} | "
            f"{r['mean_abs_diff']} | {r['p99_abs_diff']:g} |"
        )
    print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
