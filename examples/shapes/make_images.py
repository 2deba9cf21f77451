"""Writes images/: 240 photos of circles, squares and triangles in random colours, sizes and places on canvases
that are not square, and images/labels.csv naming each one's shape (what shapes_kit.reader reads)."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")


def draw(shape: str, rng: np.random.Generator) -> Image.Image:
    width, height = (int(v) for v in rng.integers(48, 97, 2))
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 90, 3)))
    side = int(rng.integers(min(width, height) // 2, min(width, height) - 2))
    left, top = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
    box, colour = (left, top, left + side, top + side), tuple(int(v) for v in rng.integers(140, 256, 3))
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon([(left, top + side), (left + side, top + side), (left + side // 2, top)], fill=colour)
    noise = rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8))


def main() -> None:
    folder, rng = Path("images"), np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as table:
        writer = csv.writer(table)
        writer.writerow(["file", "label"])
        for index in range(240):
            shape = SHAPES[index % len(SHAPES)]
            draw(shape, rng).save(folder / f"photo_{index:03d}.png")
            writer.writerow([f"photo_{index:03d}.png", shape])
    print(f"wrote 240 images and labels.csv in {folder}/")


if __name__ == "__main__":
    main()
