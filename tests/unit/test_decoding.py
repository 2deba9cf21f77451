"""`prepare.decoder: draft`: a JPEG decoded already scaled down gives the model the pixels of a full decode within
the stated tolerance, the service feeds the model exactly what `cvops data prepare` stores, whatever the file,
and the size a served image reports (a detector's boxes are mapped into it) is the photo's own."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvops.data.prepare import resized_images
from cvops.data.preprocess import DRAFT_MARGIN, reduce_while_decoding
from cvops.serving.predictor import decode_image
from tests.images import encoded, photo

ORIENTATION = 0x0112


def sideways(image: Image.Image) -> bytes:
    """A phone's portrait photo: stored landscape, with EXIF orientation 6 (turn 90 degrees clockwise to show)."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return encoded(image, "JPEG", quality=90, exif=exif)


FILES = {
    "jpeg": lambda image: encoded(image, "JPEG", quality=90),
    "jpeg, EXIF rotation": sideways,
    "CMYK jpeg": lambda image: encoded(image.convert("CMYK"), "JPEG", quality=90),
    "grey jpeg": lambda image: encoded(image.convert("L"), "JPEG", quality=90),
    "16-bit png": lambda image: encoded(Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257), "PNG"),
}


@pytest.mark.parametrize("kind", list(FILES))
@pytest.mark.parametrize(("width", "height", "size"), [(2400, 1800, 128), (1000, 750, 224), (300, 200, 64)])
def test_the_service_feeds_the_model_the_pixels_preparation_stores(tmp_path, kind, width, height, size) -> None:
    data = FILES[kind](photo(width, height, seed=width))
    (tmp_path / "photo").write_bytes(data)
    for rule in ("stretch", "letterbox"):
        prepared = resized_images(pd.Series(["photo"]), tmp_path, size, rule, "draft")[0]  # type: ignore[arg-type]
        served = decode_image(data, size, 10**8, rule, "draft")  # type: ignore[arg-type]
        assert np.array_equal(served.pixels, prepared), (kind, rule)
        turned = kind == "jpeg, EXIF rotation"
        assert (served.width, served.height) == ((height, width) if turned else (width, height))  # not the draft's


@pytest.mark.parametrize(("width", "height"), [(4000, 3000), (2400, 1800), (1200, 900), (640, 480)])
@pytest.mark.parametrize("size", [128, 224])
def test_a_draft_decode_is_a_full_decode_within_the_tolerance(width, height, size) -> None:
    data = sideways(photo(width, height, seed=width))
    full = decode_image(data, size, 10**8, "stretch", "full").pixels.astype(int)
    draft = decode_image(data, size, 10**8, "stretch", "draft").pixels.astype(int)
    difference = np.abs(full - draft)
    assert difference.mean() < 2.0 and np.percentile(difference, 99) <= 12, (difference.mean(), difference.max())
    with Image.open(io.BytesIO(data)) as image:
        reduce_while_decoding(image, size, "draft")
        image.load()
        reduced = image.size
    assert min(reduced) >= DRAFT_MARGIN * size  # still twice the input on each side: the resize still smooths
    assert reduced[0] < width or min(width, height) < 2 * DRAFT_MARGIN * size  # smaller wherever a scale allows


def test_only_a_jpeg_is_decoded_scaled_and_only_with_draft(tmp_path: Path) -> None:
    big = photo(1600, 1200, seed=0)
    with Image.open(io.BytesIO(encoded(big, "JPEG", quality=90))) as image:
        reduce_while_decoding(image, 128, "full")
        assert image.size == (1600, 1200)
    with Image.open(io.BytesIO(encoded(big, "PNG"))) as image:
        reduce_while_decoding(image, 128, "draft")
        image.load()
        assert image.size == (1600, 1200)
    with pytest.raises(ValueError, match="no decoder 'fast'"):
        reduce_while_decoding(big, 128, "fast")  # type: ignore[arg-type]
