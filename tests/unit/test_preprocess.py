"""One way from a file to pixels, whatever its mode: import, validation, preparation, serving and batch
inference all see the same upright 8-bit RGB image."""

import io

import numpy as np
import pytest
from PIL import Image

from cvops.config import PrepareParams, ValidateParams
from cvops.data.manifest import import_source
from cvops.data.prepare import prepare_dataset
from cvops.data.preprocess import RESIZE_RULES, Fit, Resize, image_mode, resize_image, to_rgb
from cvops.data.sources import folder_source
from cvops.data.validation import validate_dataset
from cvops.serving.predictor import decode_image
from tests.images import ROTATED, mode_files, write_mode_folder

EVERY_MODE = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]


@pytest.mark.parametrize("mode", [m for m in mode_files(128) if m != ROTATED])
@pytest.mark.parametrize("rule", RESIZE_RULES)
def test_every_mode_becomes_the_same_rgb_in_training_and_serving(mode: str, rule: Resize) -> None:
    data, _ = mode_files(128)[mode]
    with Image.open(io.BytesIO(data)) as image:
        prepared = resize_image(image, 12, rule)  # what `cvops data prepare` stores for training
    served = decode_image(data, 12, 10_000, rule, "full")  # what the service and batch inference feed the model
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
    served = decode_image(data, 12, 10_000, "stretch", "full")
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


@pytest.mark.parametrize("rule", RESIZE_RULES)
@pytest.mark.parametrize(("width", "height"), [(240, 80), (60, 150), (90, 90)])
def test_a_box_lands_where_its_pixels_land_under_every_resize_rule(rule: Resize, width: int, height: int) -> None:
    """Boxes go into the input (training's ground truth) and back (served detections) by the rule the pixels
    were resized by: a white square of the original is white exactly inside its mapped box."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    box = np.array([[width * 0.4, height * 0.3, width * 0.6, height * 0.7]])
    x1, y1, x2, y2 = box[0].astype(int)
    canvas[y1:y2, x1:x2] = 255
    size = 64
    resized = resize_image(Image.fromarray(canvas), size, rule)
    fit = Fit.of(width, height, size, rule)
    ix1, iy1, ix2, iy2 = fit.to_input(box)[0]
    inside = resized[int(np.ceil(iy1)) + 1 : int(iy2) - 1, int(np.ceil(ix1)) + 1 : int(ix2) - 1]
    assert inside.size and inside.min() >= 250
    outside = resized.copy()
    outside[max(0, int(iy1) - 1) : int(np.ceil(iy2)) + 1, max(0, int(ix1) - 1) : int(np.ceil(ix2)) + 1] = 0
    assert outside.max() <= 114  # black, or letterbox's grey border: nothing white outside the box
    assert np.allclose(fit.to_original(fit.to_input(box)), box)  # and back: a served box is in the sent image


def test_letterbox_keeps_the_shape_and_crop_fills_the_square() -> None:
    wide = Image.new("RGB", (300, 100), (200, 10, 10))
    boxed = resize_image(wide, 30, "letterbox")
    assert (boxed[0, 0] == 114).all() and (boxed[15, 15] == (200, 10, 10)).all()  # grey border above and below
    assert (boxed[10:20, :] == (200, 10, 10)).all()  # the whole width: nothing of the image is cut
    assert (resize_image(wide, 30, "crop") == (200, 10, 10)).all()  # the square centre, no border
    assert Fit.of(300, 100, 30, "crop").offset_x == -30  # a third of the width is left out, half each side
