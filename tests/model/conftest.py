"""Real digits, prepared once per test session, and a small model trained on them."""

import pytest

from cvops.config import Params
from cvops.data.manifest import import_source
from cvops.data.prepare import DatasetRef, prepare_dataset
from cvops.data.sources import digits_source
from cvops.data.validation import validate_dataset
from cvops.training.trainer import TrainResult, fit


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory, tiny_params: Params) -> DatasetRef:
    root = tmp_path_factory.mktemp("digits")
    import_source(digits_source(), root / "raw")
    assert validate_dataset(root / "raw", root / "validated", tiny_params.validation).passed
    return prepare_dataset(
        root / "validated", root / "raw", root / "prepared", tiny_params.prepare, tiny_params.base.seed
    )


@pytest.fixture(scope="session")
def trained(digits: DatasetRef, tiny_params: Params) -> TrainResult:
    return fit(digits, tiny_params)
