"""Shared fixtures: the REAL params.yaml shrunk for tests (by the same overlay `make demo DATASET=digits`
trains), tiny synthetic image folders, and isolated project checkouts (own ZenML config, MLflow store,
git+DVC repo)."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvops.config import Params, load_params
from cvops.env import go_offline
from tests.checkouts import new_checkout

REPO = Path(__file__).resolve().parents[1]
# The real configuration shrunk: digits, tiny images, a small CNN from scratch, few epochs. Tests run the
# same code path as production, just smaller.
SMALL_RUN = REPO / "overlays" / "digits.yaml"

go_offline()
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_params() -> Params:
    return load_params(REPO / "params.yaml", overlay=SMALL_RUN)


def write_image_folder(root: Path, classes: dict[str, int], size: int = 12, seed: int = 0) -> Path:
    """An ImageFolder tree with `classes[name]` distinct random PNGs per class."""
    rng = np.random.default_rng(seed)
    for label, count in classes.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"img_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", {"cat": 6, "dog": 5})


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh checkout: params.yaml in a temporary git repo, with its own ZenML and MLflow state."""
    root = new_checkout(tmp_path / "project")
    monkeypatch.chdir(root)
    for key in ("CVOPS_ROOT", "ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    return root


POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on the machine's server, dropped afterwards."""
    import psycopg2

    name = f"cvops_test_{uuid.uuid4().hex[:10]}"

    def admin(statement: str) -> None:
        connection = psycopg2.connect(f"{POSTGRES}/postgres", connect_timeout=10)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
