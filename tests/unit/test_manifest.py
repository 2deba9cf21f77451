"""Importing a source into data/raw with a manifest, atomically."""

import hashlib
from collections.abc import Iterator

import pandas as pd
import pytest
from PIL import Image

from cvops.data.manifest import MANIFEST, MANIFEST_COLUMNS, import_source, read_manifest
from cvops.data.preprocess import image_mode
from cvops.data.sources import Sample, Source, digits_source, folder_source
from cvops.errors import DataError, NotInitializedError
from tests.images import ROTATED, write_mode_folder


def test_bundled_images_are_written_as_png(tmp_path):
    manifest = import_source(digits_source(limit=2), tmp_path / "raw")
    assert len(manifest) == 20 and all(path.endswith(".png") for path in manifest["path"])
    assert set(manifest["mode"]) == {"L"} and set(manifest["width"]) == {8}


def test_a_users_files_are_imported_as_they_are_whatever_their_mode(tmp_path):
    """A folder with CMYK, palette, 16-bit, float and EXIF-rotated files imports without a crash (a CMYK
    JPEG used to end the import in a traceback), byte for byte, each file's mode and displayed size noted."""
    source = write_mode_folder(tmp_path / "images", {"bright": 190, "dark": 60})
    manifest = import_source(folder_source(source), tmp_path / "raw").set_index("source_path")
    assert len(manifest) == 24
    for original in source.rglob("*.*"):
        row = manifest.loc[original.relative_to(source).as_posix()]
        stored = tmp_path / "raw" / row["path"]
        assert stored.read_bytes() == original.read_bytes() and stored.suffix == original.suffix
        with Image.open(original) as image:
            assert row["mode"] == image_mode(image)
            stored_size = (16, 24) if original.stem.startswith(ROTATED) else (24, 16)  # sideways in the file
            assert image.size == stored_size
        assert (row["width"], row["height"]) == (24, 16)  # as displayed, EXIF orientation applied
    assert set(manifest["mode"]) == {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"}


def test_a_file_that_is_not_an_image_is_kept_for_validation(image_folder, tmp_path):
    (image_folder / "dog" / "bad.png").write_text("this is not a png")
    manifest = import_source(folder_source(image_folder), tmp_path / "raw").set_index("source_path")
    assert (tmp_path / "raw" / "dog" / "bad.png").read_text() == "this is not a png"
    assert pd.isna(manifest.loc["dog/bad.png", "mode"]) or manifest.loc["dog/bad.png", "mode"] == ""
    assert manifest.loc["dog/img_000.png", "mode"] == "RGB"


def test_class_names_round_trip_exactly(tmp_path):
    for name in ("große Teile", "café crème", "NA", "None"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), i * 50).save(tmp_path / "images" / name / f"{i}.png")
    import_source(folder_source(tmp_path / "images"), tmp_path / "raw")
    manifest = read_manifest(tmp_path / "raw")
    assert sorted(set(manifest["label"])) == sorted(["große Teile", "café crème", "NA", "None"])
    assert (tmp_path / "raw" / "große Teile" / "0.png").is_file()


def test_a_class_named_like_the_manifest_is_refused(tmp_path):
    (tmp_path / "images" / MANIFEST).mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "images" / MANIFEST / "a.png")
    with pytest.raises(DataError, match="rename"):
        import_source(folder_source(tmp_path / "images"), tmp_path / "raw")


def test_import_writes_a_manifest_matching_the_files(image_folder, tmp_path):
    raw = tmp_path / "data" / "raw"
    import_source(folder_source(image_folder), raw)
    manifest = pd.read_csv(raw / MANIFEST)
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert manifest["label"].value_counts().to_dict() == {"cat": 6, "dog": 5}
    pngs = sorted(p.relative_to(raw).as_posix() for p in raw.glob("*/*.png"))
    assert sorted(manifest["path"]) == pngs and len(pngs) == 11
    for row in manifest.itertuples():
        file = raw / row.path
        assert file.parent.name == row.label
        assert hashlib.sha256(file.read_bytes()).hexdigest() == row.sha256
        with Image.open(file) as image:
            assert (image.width, image.height, image.mode) == (row.width, row.height, row.mode)


def _failing_source() -> Source:
    def samples() -> Iterator[Sample]:
        for i in range(2):
            yield Sample("a", f"ok_{i}", Image.new("L", (4, 4), i))
        raise DataError("cannot read image broken.png")

    return Source(["a"], 3, samples())


def test_failed_import_keeps_the_previous_dataset(image_folder, tmp_path):
    raw = tmp_path / "data" / "raw"
    import_source(folder_source(image_folder), raw)
    before = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}

    with pytest.raises(DataError, match=r"broken\.png"):
        import_source(_failing_source(), raw)

    after = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]


def test_failed_first_import_leaves_nothing(tmp_path):
    raw = tmp_path / "data" / "raw"
    with pytest.raises(DataError):
        import_source(_failing_source(), raw)
    assert list(raw.parent.iterdir()) == []


def test_read_manifest_before_import(tmp_path):
    with pytest.raises(NotInitializedError, match="cvops data import"):
        read_manifest(tmp_path / "data" / "raw")


def test_read_manifest_round_trips(image_folder, tmp_path):
    raw = tmp_path / "raw"
    written = import_source(folder_source(image_folder), raw)
    assert read_manifest(raw)[MANIFEST_COLUMNS].equals(written[MANIFEST_COLUMNS])
