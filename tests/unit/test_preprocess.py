"""One way from a file to pixels, whatever its mode: import, validation, preparation, serving and batch
inference all see the same upright 8-bit RGB image."""

import io

import numpy as np
import pytest
from PIL import Image

from cvops.config import PrepareParams, ValidateParams
from cvops.data.manifest import import_source
from cvops.data.prepare import prepare_dataset
from cvops.data.preprocess import image_mode, resize_image, to_rgb
from cvops.data.sources import folder_source
from cvops.data.validation import validate_dataset
from cvops.serving.predictor import decode_image
from tests.images import ROTATED, mode_files, write_mode_folder

EVERY_MODE = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]


@pytest.mark.parametrize("mode", [m for m in mode_files(128) if m != ROTATED])
def test_every_mode_becomes_the_same_rgb_in_training_and_serving(mode: str) -> None:
    data, _ = mode_files(128)[mode]
    with Image.open(io.BytesIO(data)) as image:
        prepared = resize_image(image, 12)  # what `cvops data prepare` stores for training
    served = decode_image(data, 12, max_pixels=10_000)  # what the service and batch inference feed the model
    assert prepared.dtype == np.uint8 and prepared.shape == (12, 12, 3)
    assert np.array_equal(prepared, served.pixels)
    assert 80 < prepared.mean() < 180  # grey around 128: no mode is read as black or white


@pytest.mark.parametrize(("size", "to"), [((300, 300), 128), ((37, 53), 16), ((8, 8), 24)])
def test_a_grey_image_resized_as_one_band_has_the_pixels_of_its_rgb_copy(size: tuple[int, int], to: int) -> None:
    """resize_image resizes L images before copying them to RGB (faster); training's pixels must not change."""
    grey = Image.fromarray(np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8), mode="L")
    rgb_first = np.asarray(to_rgb(grey).resize((to, to), Image.Resampling.BILINEAR))
    assert np.array_equal(resize_image(grey, to), rgb_first)


def test_16_bit_and_float_images_are_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 1, 256, dtype=np.float64).reshape(16, 16)
    expected = np.round(ramp * 255)
    for image in (Image.fromarray((ramp * 65535).astype(np.uint16)), Image.fromarray(ramp.astype(np.float32))):
        grey = np.asarray(to_rgb(image))[..., 0]
        assert np.abs(grey - expected).max() <= 1, image.mode  # Pillow alone clips I;16 and truncates F to 0


def test_alpha_and_palette_modes_convert() -> None:
    for mode in EVERY_MODE:
        assert to_rgb(Image.new(mode, (3, 2))).mode == "RGB", mode


def test_exif_orientation_is_applied_everywhere() -> None:
    data, _ = mode_files(128)[ROTATED]
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (16, 24)  # stored sideways
        upright = to_rgb(image)
    assert upright.size == (24, 16)
    served = decode_image(data, 12, max_pixels=10_000)
    assert (served.width, served.height) == (24, 16)  # what the inference log records


def test_the_16_bit_byte_orders_are_one_mode() -> None:
    assert image_mode(Image.new("I;16B", (2, 2))) == image_mode(Image.new("I;16", (2, 2))) == "I;16"


def test_allowed_modes_decide_and_the_report_names_each_file(tmp_path) -> None:
    """The default accepts L and RGB only: every other file is named in the mode check. With every mode
    allowed, the same folder validates and prepares."""
    source = write_mode_folder(tmp_path / "images", {"bright": 190, "dark": 60}, copies=1)
    raw = tmp_path / "raw"
    import_source(folder_source(source), raw)
    report = validate_dataset(raw, tmp_path / "validated", ValidateParams(min_per_class=1))
    assert not report.passed
    (mode_check,) = [c for c in report.checks if not c.passed]
    assert mode_check.name == "mode" and "validate.allowed_modes" in mode_check.expectation
    named = {path.split("/", 1)[1].rsplit("_", 1)[0] for path in mode_check.offenders}
    assert named == {"1", "LA", "P", "RGBA", "CMYK", "YCbCr", "I16", "I", "F"}  # L, RGB and the JPEGs pass
    assert len(mode_check.offenders) == 18

    params = ValidateParams(min_per_class=1, allowed_modes=EVERY_MODE)
    assert validate_dataset(raw, tmp_path / "validated", params).passed
    prepare = PrepareParams(image_size=12, val_fraction=0.2, test_fraction=0.2)
    ref = prepare_dataset(tmp_path / "validated", raw, tmp_path / "prepared", prepare, seed=0)
    assert sum(sum(c.values()) for c in ref.counts.values()) == 24


def test_an_unknown_mode_in_params_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="allowed_modes"):
        ValidateParams(allowed_modes=["LAB"])
