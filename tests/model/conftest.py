"""Real digits, prepared once per worker, and a small model trained on them once per test run."""

import pytest
import torch
from filelock import FileLock

from cvops.config import Params
from cvops.data.manifest import import_source
from cvops.data.prepare import DatasetRef, prepare_dataset
from cvops.data.sources import digits_source
from cvops.data.validation import validate_dataset
from cvops.training.trainer import TrainResult, fit
from tests.conftest import run_shared_dir


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory, tiny_params: Params) -> DatasetRef:
    root = tmp_path_factory.mktemp("digits")
    import_source(digits_source(), root / "raw")
    assert validate_dataset(root / "raw", root / "validated", tiny_params.validation).passed
    return prepare_dataset(
        root / "validated", root / "raw", root / "prepared", tiny_params.prepare, tiny_params.base.seed
    )


@pytest.fixture(scope="session")
def trained(digits: DatasetRef, tiny_params: Params, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """`fit` on the digits: by whichever xdist worker asks first, the others load what it saved."""
    saved = run_shared_dir(tmp_path_factory) / "trained-digits-model.pt"
    with FileLock(f"{saved}.lock"):
        if not saved.exists():
            partial = saved.with_suffix(".partial")
            torch.save(fit(digits, tiny_params), partial)
            partial.rename(saved)  # never a half-written model for the next worker
    return torch.load(saved, weights_only=False)
