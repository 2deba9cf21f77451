"""Benchmark: a photo's way to the model's input. The milliseconds to decode a JPEG and resize it to the model's
input, by `prepare.decoder` (full: every pixel; draft: scaled down by libjpeg while decoding, Pillow's
`Image.draft`), against OpenCV's reduced decode (`IMREAD_REDUCED_COLOR_2/4/8` and an area resize), the peer a
user would otherwise pick; and how far each one's pixels are from the full decode's.

The photos are photo-like (tests/images.py: gradients, hard-edged shapes, sensor noise), JPEG quality 90, 12, 8
and 2 megapixels, with an EXIF rotation as phones write them. cvops's two ways are the service's own code
(cvops.serving.predictor.decode_image); the ways run in turn, photo by photo, and the table has the median.

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

from cvops.data.preprocess import DRAFT_MARGIN  # noqa: E402
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


WAYS: dict[str, Callable[[bytes, int], np.ndarray]] = {
    "cvops full": lambda data, size: decode_image(data, size, 10**9, "stretch", "full").pixels,
    "cvops draft": lambda data, size: decode_image(data, size, 10**9, "stretch", "draft").pixels,
    "OpenCV reduced": opencv,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="times each photo is decoded by each way")
    args = parser.parse_args()
    rows = []
    for name, (width, height) in PHOTOS.items():
        data = with_rotation(photo(width, height, seed=width))
        for size in SIZES:
            seconds: dict[str, list[float]] = {way: [] for way in WAYS}
            for _ in range(args.reps):
                for way, decode in WAYS.items():
                    start = time.perf_counter()
                    decode(data, size)
                    seconds[way].append(time.perf_counter() - start)
            full = WAYS["cvops full"](data, size).astype(int)
            for way, decode in WAYS.items():
                median = statistics.median(seconds[way]) * 1000
                differs = np.abs(decode(data, size).astype(int) - full)
                rows.append(
                    {
                        "photo": f"{name} ({width}x{height})",
                        "input": size,
                        "way": way,
                        "ms": round(median, 1),
                        "speedup_vs_full": round(statistics.median(seconds["cvops full"]) * 1000 / median, 2),
                        "mean_abs_diff": round(float(differs.mean()), 3),
                        "p99_abs_diff": float(np.percentile(differs, 99)),
                    }
                )
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenCV {cv2.__version__}"
    )
    out = REPO / "bench" / "results" / "decoding.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "reps": args.reps, "rows": rows}, indent=2) + "\n")
    print(f"decode + resize of a JPEG (quality 90, EXIF-rotated), median of {args.reps}; {machine}\n")
    print("| photo | input | way | ms | x full | mean abs diff | p99 abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['photo']} | {r['input']} | {r['way']} | {r['ms']} | {r['speedup_vs_full']} | "
            f"{r['mean_abs_diff']} | {r['p99_abs_diff']:g} |"
        )
    print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
