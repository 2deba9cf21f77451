"""This project's own dataset reader: `data.source: shapes_kit.reader:samples`, with `data.path` the folder.

The labels are in a CSV beside the images (file,label), as many labelling tools and spreadsheets keep them,
not in folder names. cvops calls the function with data.path and imports what it yields: (image, label)
pairs, an image being a file path (imported byte for byte), a PIL image or a uint8 array. A detector's
reader yields (image, [(label, x1, y1, x2, y2), ...]) instead.
"""

import csv
from collections.abc import Iterator
from pathlib import Path


def samples(path: Path | None) -> Iterator[tuple[Path, str]]:
    folder = Path(path or "images")
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as table:
        for row in csv.DictReader(table):
            yield folder / row["file"], row["label"]
