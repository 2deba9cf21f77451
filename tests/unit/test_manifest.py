"""Importing a source into data/raw with a manifest, atomically."""

import hashlib
from collections.abc import Iterator

import pandas as pd
import pytest
from PIL import Image

from cvops.data.manifest import MANIFEST, MANIFEST_COLUMNS, import_source, read_manifest
from cvops.data.sources import Sample, Source, folder_source
from cvops.errors import DataError, NotInitializedError


def test_import_writes_pngs_and_a_matching_manifest(image_folder, tmp_path):
    raw = tmp_path / "data" / "raw"
    import_source(folder_source(image_folder), raw, progress=False)
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
    import_source(folder_source(image_folder), raw, progress=False)
    before = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}

    with pytest.raises(DataError, match=r"broken\.png"):
        import_source(_failing_source(), raw, progress=False)

    after = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]


def test_failed_first_import_leaves_nothing(tmp_path):
    raw = tmp_path / "data" / "raw"
    with pytest.raises(DataError):
        import_source(_failing_source(), raw, progress=False)
    assert list(raw.parent.iterdir()) == []


def test_read_manifest_before_import(tmp_path):
    with pytest.raises(NotInitializedError, match="cvops data import"):
        read_manifest(tmp_path / "data" / "raw")


def test_read_manifest_round_trips(image_folder, tmp_path):
    raw = tmp_path / "raw"
    written = import_source(folder_source(image_folder), raw, progress=False)
    assert read_manifest(raw)[MANIFEST_COLUMNS].equals(written[MANIFEST_COLUMNS])
