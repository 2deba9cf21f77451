"""Benchmark: import + validate + prepare throughput and peak memory, and how cost grows with size.

Each measurement runs in a fresh process (peak RSS is per process) on a scratch folder:
digits (1,797), ELPV (2,624 at 300x300), and Fashion-MNIST at 10%, 50% and 100% (7k, 35k, 70k
28x28 images) when /usr/share/datasets/fashion-mnist exists (apt-get install dataset-fashion-mnist).
Images are prepared at their own size for 8x8/28x28 data (prepare.image_size=28) and at 128 px for ELPV.

Usage: python bench/data.py [--skip-elpv]
Writes bench/results/data.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cvops.env import go_offline

REPO = Path(__file__).resolve().parents[1]
go_offline()  # the offline switches, before any library loads
FASHION = Path("/usr/share/datasets/fashion-mnist")


def measure(source: str, limit: int | None, image_size: int) -> dict:
    """One dataset through the three data stages, in this process."""
    from cvops.config import PrepareParams, ValidateParams
    from cvops.data.manifest import import_source
    from cvops.data.prepare import prepare_dataset
    from cvops.data.sources import SOURCE_READERS
    from cvops.data.validation import validate_dataset

    root = Path(tempfile.mkdtemp(prefix="cvops-bench-data-"))
    timings = {}
    start = time.perf_counter()
    manifest = import_source(SOURCE_READERS[source](None, limit), root / "raw")
    timings["import_s"] = time.perf_counter() - start
    start = time.perf_counter()
    report = validate_dataset(root / "raw", root / "validated", ValidateParams())
    timings["validate_s"] = time.perf_counter() - start
    assert report.passed, report.summary()
    start = time.perf_counter()
    prepare_dataset(
        root / "validated", root / "raw", root / "prepared", PrepareParams(image_size=image_size), 42, progress=False
    )
    timings["prepare_s"] = time.perf_counter() - start
    total = sum(timings.values())
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return {
        "source": source,
        "images": len(manifest),
        "image_size": image_size,
        **timings,
        "total_s": total,
        "images_per_s": len(manifest) / total,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]) or None, int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-elpv", action="store_true")
    args = parser.parse_args()
    cases = [("digits", 0, 28)] + ([] if args.skip_elpv else [("elpv", 0, 128)])
    if FASHION.is_dir():
        cases += [("fashion-mnist", n, 28) for n in (700, 3500, 7000)]  # per class: 7k, 35k, 70k images
    rows = []
    for source, limit, size in cases:
        done = subprocess.run(
            [sys.executable, __file__, "--one", source, str(limit), str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  measured {source} ({rows[-1]['images']} images)", file=sys.stderr)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out = REPO / "bench" / "results" / "data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print("| dataset | images | size | import s | validate s | prepare s | total s | images/s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            r["source"],
            r["images"],
            f"{r['image_size']} px",
            f"{r['import_s']:.1f}",
            f"{r['validate_s']:.1f}",
            f"{r['prepare_s']:.1f}",
            f"{r['total_s']:.1f}",
            f"{r['images_per_s']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    fashion = [r for r in rows if r["source"] == "fashion-mnist"]
    if len(fashion) > 1:
        per_image = [r["total_s"] / r["images"] * 1e3 for r in fashion]
        print(
            f"\nFashion-MNIST cost per image: {', '.join(f'{p:.2f} ms' for p in per_image)} "
            f"at {', '.join(str(r['images']) for r in fashion)} images (linear growth keeps it flat)"
        )
    print(f"\nmachine: {machine}; JSON: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
