"""Image files in every mode Pillow decodes, as users' folders hold them: palette PNGs, CMYK JPEGs from print
workflows, 16-bit PNGs from scientific cameras, float TIFFs, phone photos rotated by their EXIF tag."""

import functools
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROTATED = "exif-rotated"  # a JPEG stored sideways, with EXIF orientation 6 (turn 90 degrees clockwise to view)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def mode_files(level: int, size: tuple[int, int] = (24, 16), seed: int = 0) -> dict[str, tuple[bytes, str]]:
    """One file per mode, named by mode: (bytes, suffix). Pixels vary around grey `level` (0-255), so two
    levels make two classes a small model tells apart; the bright and dark halves of the rotated JPEG
    show whether its orientation was applied."""
    rng = np.random.default_rng(seed + level)
    pixels = np.clip(level + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    rgb = Image.fromarray(pixels)
    grey = np.asarray(rgb.convert("L"), dtype=np.float64)
    sideways = rgb.rotate(90, expand=True)  # EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "1": (encoded(rgb.convert("1"), "PNG"), ".png"),
        "L": (encoded(rgb.convert("L"), "PNG"), ".png"),
        "LA": (encoded(rgb.convert("LA"), "PNG"), ".png"),
        "P": (encoded(rgb.convert("P"), "PNG"), ".png"),
        "RGB": (encoded(rgb, "JPEG", quality=95), ".jpg"),
        "RGBA": (encoded(rgb.convert("RGBA"), "PNG"), ".png"),
        "CMYK": (encoded(rgb.convert("CMYK"), "JPEG", quality=95), ".jpg"),
        "YCbCr": (encoded(rgb.convert("YCbCr"), "TIFF"), ".tif"),
        "I;16": (encoded(Image.fromarray((grey * 257).astype(np.uint16)), "PNG"), ".png"),
        "I": (encoded(Image.fromarray((grey * 257).astype(np.int32)), "TIFF"), ".tif"),
        "F": (encoded(Image.fromarray((grey / 255).astype(np.float32)), "TIFF"), ".tif"),
        ROTATED: (encoded(sideways, "JPEG", quality=95, exif=exif.tobytes()), ".jpg"),
    }


def write_mode_folder(root: Path, classes: dict[str, int], copies: int = 1) -> Path:
    """DIR/<class>/<mode>_<i>.<suffix>: every mode, `copies` times, for each class at its grey level."""
    for label, level in classes.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(copies):
            for mode, (data, suffix) in mode_files(level, seed=i).items():
                (root / label / f"{mode.replace(';', '')}_{i}{suffix}").write_bytes(data)
    return root


def write_coco(scenes, root: Path) -> Path:
    """Scenes as a COCO dataset: JPEG-free PNG files under root/img/ and root/annotations.json."""
    (root / "img").mkdir(parents=True)
    images, annotations = [], []
    for i, scene in enumerate(scenes):
        scene.image.save(root / "img" / f"{scene.name}.png")
        images.append(
            {
                "id": i + 1,
                "file_name": f"img/{scene.name}.png",
                "width": scene.image.width,
                "height": scene.image.height,
            }
        )
        for box in scene.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(box.label) + 1,
                    "bbox": [box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": d + 1, "name": str(d)} for d in range(10)]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@functools.cache
def photo(width: int, height: int, seed: int) -> Image.Image:
    """Something like a photo: soft gradients, objects with hard edges, and sensor noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    image = Image.fromarray(np.stack([x, y, (x + y) / 2], -1).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        left, top = int(rng.integers(0, width)), int(rng.integers(0, height))
        right, bottom = (
            left + int(rng.integers(width // 40, width // 5)),
            top + int(rng.integers(height // 40, height // 5)),
        )
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([left, top, right, bottom], fill=colour)
    noisy = np.asarray(image, dtype=np.float32) + rng.standard_normal((height, width, 3), dtype=np.float32) * 6
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
