"""Shared fixtures: the REAL params.yaml shrunk for tests, tiny synthetic image folders,
and isolated project checkouts (own ZenML config, MLflow store, git+DVC repo)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvops.config import Params, load_params

REPO = Path(__file__).resolve().parents[1]
# Shrinks the real configuration: tiny images, a small CNN from scratch, no flips (digits are not
# flip-invariant), few epochs. Tests run the same code path as production, just smaller.
TINY_OVERRIDES = [
    "prepare.image_size=16",
    "train.model=resnet10t",
    "train.pretrained=none",
    "train.epochs=6",
    "train.lr=0.003",
    "train.head_lr_multiplier=1",
    "train.freeze_backbone_epochs=0",
    "train.batch_size=64",
    "train.augment.hflip=0",
    "train.augment.vflip=0",
    "train.augment.rotate90=0",
    "train.augment.shift_scale_rotate=0",
    "base.device=cpu",
    "gate.min_invariance.hflip=null",  # digits are not flip-invariant
]

for key, value in {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "GIT_PYTHON_REFRESH": "quiet",
    "TQDM_DISABLE": "1",
}.items():
    os.environ.setdefault(key, value)


@pytest.fixture(scope="session")
def tiny_params() -> Params:
    return load_params(REPO / "params.yaml", TINY_OVERRIDES)


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
    root = tmp_path / "project"
    root.mkdir()
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "params.yaml", "dvc.yaml"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=root, check=True)
    monkeypatch.chdir(root)
    for key in ("CVOPS_ROOT", "ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    return root
