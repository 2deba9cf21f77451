"""Shared fixtures: the REAL params.yaml shrunk for tests (by the same overlay `make demo DATASET=digits`
trains), tiny synthetic image folders, and isolated project checkouts (own ZenML config, MLflow store,
git+DVC repo)."""

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from PIL import Image

from cvops.config import Params, load_params
from cvops.env import MLFLOW_TRACKING_URI_ENV, go_offline
from tests.checkouts import copy_checkout, new_checkout

if TYPE_CHECKING:  # torch and timm load when a test first asks for a model, not for every unit test
    from cvops.data.prepare import DatasetRef
    from cvops.training.trainer import TrainResult

REPO = Path(__file__).resolve().parents[1]
# The real configuration shrunk: digits, tiny images, a small CNN from scratch, few epochs. Tests run the
# same code path as production, just smaller.
SMALL_RUN = REPO / "overlays" / "digits.yaml"

go_offline()
os.environ.setdefault("TQDM_DISABLE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs a worker per core: one thread each (commands inherit it), or every training's thread pool
    # spins on both cores at once and each runs slower than alone
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# The test files that take longest, longest first (`make test` runs two workers, a file each at a time: the
# long ones start first and the short ones fill the gaps). Measured by `pytest --durations`; see README.
SLOWEST_FIRST = (
    "tests/team/test_team_stack.py",
    "tests/integration/test_docs.py",
    "tests/integration/test_distributed.py",
    "tests/integration/test_training_pipeline.py",
    "tests/integration/test_monitoring.py",
    "tests/integration/test_serving.py",
    "tests/integration/test_loop.py",
    "tests/integration/test_detection_pipeline.py",
    "tests/integration/test_video.py",
    "tests/integration/test_user_folder.py",
    "tests/integration/test_docs_guides.py",
    "tests/integration/test_registry.py",
    "tests/integration/test_dvc_data.py",
    "tests/model/test_detection.py",
    "tests/model/test_training.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(autouse=True)
def no_tracking_uri_of_another_test() -> Iterator[None]:
    """`mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI, which `Project.tracking_uri` honours (a team's
    server): no test, and no fixture set up after it, may read the store of a checkout another test used."""
    os.environ.pop(MLFLOW_TRACKING_URI_ENV, None)
    yield
    os.environ.pop(MLFLOW_TRACKING_URI_ENV, None)


@pytest.fixture(scope="session")
def tiny_params() -> Params:
    return load_params(REPO / "params.yaml", overlay=SMALL_RUN)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory, tiny_params: Params) -> "DatasetRef":
    """The digits imported, validated and prepared by the small run's params, once per worker."""
    from cvops.data.manifest import import_source
    from cvops.data.prepare import prepare_dataset
    from cvops.data.sources import digits_source
    from cvops.data.validation import validate_dataset

    root = tmp_path_factory.mktemp("digits")
    import_source(digits_source(), root / "raw")
    assert validate_dataset(root / "raw", root / "validated", tiny_params.validation).passed
    return prepare_dataset(
        root / "validated", root / "raw", root / "prepared", tiny_params.prepare, tiny_params.base.seed
    )


@pytest.fixture(scope="session")
def trained(digits: "DatasetRef", tiny_params: Params, tmp_path_factory: pytest.TempPathFactory) -> "TrainResult":
    """`fit` on the digits: by whichever xdist worker asks first, the others load what it saved."""
    import torch
    from filelock import FileLock

    from cvops.training.trainer import fit

    saved = run_shared_dir(tmp_path_factory) / "trained-digits-model.pt"
    with FileLock(f"{saved}.lock"):
        if not saved.exists():
            partial = saved.with_suffix(".partial")
            torch.save(fit(digits, tiny_params), partial)
            partial.rename(saved)  # never a half-written model for the next worker
    return torch.load(saved, weights_only=False)


def small_scenes(path: Path) -> Path:
    """The detection demo's overlay with the tests' shrink (tests/assets/small-scenes.yaml) laid over it, written
    to `path`: one overlay for every test that trains a detector."""
    demo = yaml.safe_load((REPO / "overlays" / "digit-scenes.yaml").read_text())
    shrink = yaml.safe_load((REPO / "tests" / "assets" / "small-scenes.yaml").read_text())
    for section, values in shrink.items():
        demo[section] = demo.get(section, {}) | values
    path.write_text(yaml.safe_dump(demo))
    return path


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


def run_shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test run's base folder, which every xdist worker sees (each worker's own is a folder below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@dataclass(frozen=True)
class TrainedCheckout:
    """A checkout that ran a demo's training: what that training printed, and where any Ray instance its
    commands started would have written (they ran with RAY_TMPDIR there)."""

    root: Path
    training: subprocess.CompletedProcess[str]
    ray_tmp: Path

    def copy(self, root: Path) -> Path:
        """A copy of its own to change (commands, promotions, retraining): the original never changes."""
        return copy_checkout(self.root, root)


def tree_state(root: Path) -> list[list[str | int]]:
    return sorted([str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in root.rglob("*"))


def trained_once(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    build: "Callable[[Path, dict[str, str]], tuple[Path, subprocess.CompletedProcess[str]]]",
) -> Iterator[TrainedCheckout]:
    """A checkout that `build` made and trained in a folder of its own (given the environment its commands run
    with), once per test run, by whichever xdist worker asks first. Tests take copies; the session ends by
    checking that nothing wrote into it."""
    from filelock import FileLock

    shared = run_shared_dir(tmp_path_factory)
    folder, record = shared / name, shared / f"{name}.json"
    ray_tmp = folder / "ray-tmp"
    with FileLock(f"{record}.lock"):
        if not record.exists():
            folder.mkdir()
            root, result = build(folder, {"RAY_TMPDIR": str(ray_tmp)})
            printed = {"args": result.args, "stdout": result.stdout, "stderr": result.stderr}
            record.write_text(json.dumps({"root": str(root), "training": printed, "state": tree_state(root)}))
    built = json.loads(record.read_text())
    root = Path(built["root"])
    yield TrainedCheckout(root, subprocess.CompletedProcess(returncode=0, **built["training"]), ray_tmp)
    assert tree_state(root) == built["state"], f"a test wrote into {root}, which tests share"


def first_model(folder: Path, env: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The docs' "Your first model" page, run as written in `folder` (tests/docs.py): a new project, committed,
    `cvops init`, and the small digits run. Returns the project and what its training printed."""
    from tests.docs import DOCS, Shell, docs_env

    with Shell(folder, docs_env(folder / "home") | env, folder / "shell") as shell:
        printed = shell.run_page(DOCS / "getting-started" / "first-model.md")
        root = shell.cwd()
    (training,) = [out for block, out in printed if "cvops run training" in block.text]
    return root, subprocess.CompletedProcess(["cvops", "run", "training"], 0, stdout=training, stderr="")


def checkout_ran(
    commands: list[list[str]], scenes: bool = False
) -> "Callable[[Path, dict[str, str]], tuple[Path, subprocess.CompletedProcess[str]]]":
    """A build for `trained_once`: a new checkout (with `scenes`, the tests' detection overlay as small.yaml beside
    params.yaml) that ran the cvops `commands`, the last a training."""
    from tests.cli import cvops

    def build(folder: Path, env: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess[str]]:
        root = new_checkout(folder / "checkout")
        if scenes:
            small_scenes(root / "small.yaml")
        for args in commands:
            result = cvops(root, *args, env=env)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return root, result

    return build


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedCheckout]:
    """The docs' first model (`make demo DATASET=digits` in a project of its own): `cvops new`, `cvops init`, then
    `cvops run training --overlay overlays/digits.yaml`: version 1 of cvops-classifier, the challenger, with its
    evidence, ONNX files, monitoring reference and bento."""
    yield from trained_once(tmp_path_factory, "trained-digits", first_model)


@pytest.fixture(scope="session")
def trained_scenes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedCheckout]:
    """A fresh checkout set to detection (`cvops params set`, as a user would) and trained on a small set of
    composed scenes by the detection demo's overlay shrunk for the tests (`small_scenes`): version 1 of
    cvops-detector, with its evidence, ONNX files and a detector's bento."""
    detection = ["params", "set", "task=detection", "data.source=digit-scenes"]
    commands = [["init"], detection, ["run", "training", "--overlay", "small.yaml"]]
    yield from trained_once(tmp_path_factory, "trained-scenes", checkout_ran(commands, scenes=True))
