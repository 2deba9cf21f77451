"""The data stages under real DVC in a fresh git+DVC checkout: what re-runs when, the data version,
status, push/pull through the local remote, and a validation failure stopping the pipeline.

One checkout is shared by the module (`cvops init` alone takes ~20 s); the tests run in file order
and each leaves the data reproduced, except the last one, which breaks it on purpose.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from cvops.cli.shapes import schema
from cvops.config import Project
from cvops.data.versioning import data_version, reproduce, workspace_status
from cvops.errors import DataInvalidError
from tests.checkouts import new_checkout
from tests.conftest import write_image_folder

pytestmark = pytest.mark.slow
LOCAL_STATE = ("CVOPS_ROOT", "ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI")


def cvops(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in LOCAL_STATE}
    return subprocess.run(
        [sys.executable, "-m", "cvops.cli", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory):
    """`cvops init` in a fresh git repo importing a folder of 3 x 12 PNGs, then the stages reproduced."""
    with pytest.MonkeyPatch.context() as mp:
        for key in LOCAL_STATE:
            mp.delenv(key, raising=False)
        source = write_image_folder(tmp_path_factory.mktemp("images"), {"cat": 12, "dog": 12, "fox": 12})
        settings = ("prepare.image_size=16", "data.source=folder", f"data.path={source}")
        root = new_checkout(tmp_path_factory.mktemp("checkout"), overrides=settings)
        project = Project(root)
        ok(cvops(root, "init"))
        first_run = reproduce(project, "prepare")
        yield project, source, first_run


def test_stages_run_once_then_nothing(checkout):
    project, _, first_run = checkout
    assert first_run == ["import", "validate", "prepare"]
    for stage in ("raw", "validated", "prepared"):
        assert (project.data_dir / stage / "manifest.csv").is_file()
    assert len(np.load(project.prepared_dir / "images.npy")) == 36
    version = data_version(project)

    assert reproduce(project, "prepare") == []
    assert data_version(project) == version
    assert workspace_status(project) == {}


def test_only_stages_whose_params_changed_run_again(checkout):
    project, _, _ = checkout
    version = data_version(project)

    project.set_params(["train.epochs=1", "train.lr=0.1"])
    assert reproduce(project, "prepare") == []

    project.set_params(["prepare.image_size=20"])
    assert reproduce(project, "prepare") == ["prepare"]
    assert np.load(project.prepared_dir / "images.npy").shape == (36, 20, 20, 3)
    assert data_version(project) != version
    project.set_params(["prepare.image_size=16"])
    assert reproduce(project, "prepare") == ["prepare"]
    assert data_version(project) == version  # same params, same data: same version

    project.set_params(["validate.min_per_class=5"])
    ran = reproduce(project, "prepare")
    assert "validate" in ran and "import" not in ran
    assert ran == ["validate"]  # the validated set is unchanged, so prepare's inputs are too
    assert data_version(project) == version


def test_data_status_shows_the_version_and_a_clean_workspace(checkout):
    project, _, _ = checkout
    out = ok(cvops(project.root, "data", "status"))
    assert f"data version: {data_version(project)}" in out
    assert "matches dvc.lock" in out
    assert all(name in out for name in ("cat", "dog", "fox"))
    status = json.loads(ok(cvops(project.root, "data", "status", "--json")))
    jsonschema.validate(status, schema("data-status"))
    assert status["data_version"] == data_version(project) and status["matches_dvc_lock"]
    assert status["classes"] == ["cat", "dog", "fox"] and sum(status["counts"]["test"].values()) > 0


def test_push_then_pull_restores_the_data(checkout):
    project, _, _ = checkout
    version = data_version(project)
    before = {p: digest(p) for p in project.data_dir.rglob("*") if p.is_file() and ".gitignore" not in p.name}
    ok(cvops(project.root, "data", "push"))

    for gone in (project.prepared_dir, project.validated_dir, project.raw_dir, project.root / ".dvc" / "cache"):
        shutil.rmtree(gone)
    assert workspace_status(project) != {}
    ok(cvops(project.root, "data", "pull"))

    assert {p: digest(p) for p in before} == before
    assert workspace_status(project) == {}
    assert data_version(project) == version


def test_changing_one_source_image_changes_the_data_version(checkout):
    project, source, _ = checkout
    version = data_version(project)
    pixels = np.random.default_rng(99).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source / "dog" / "img_007.png")

    ok(cvops(project.root, "data", "import", "folder", "--path", str(source)))
    assert reproduce(project, "prepare") == ["validate", "prepare"]

    assert data_version(project) != version
    assert digest(project.raw_dir / "dog" / "img_007.png") != digest(project.raw_dir / "dog" / "img_006.png")
    assert reproduce(project, "prepare") == []


def test_a_broken_source_file_stops_the_pipeline_at_validation(checkout, capfd):
    project, source, _ = checkout
    version = data_version(project)
    (source / "fox" / "notes.png").write_text("not an image, whatever its name says\n")
    assert reproduce(project, "import", force=True) == ["import"]  # what `cvops data import` runs
    assert (project.raw_dir / "fox" / "notes.png").is_file()  # imported as it is, for validation to judge

    with pytest.raises(DataInvalidError, match="data is invalid"):
        reproduce(project, "validate")
    assert "fox/notes.png" in capfd.readouterr().err  # the stage's summary, as `cvops run training` shows it
    assert not project.validated_dir.exists()
    assert data_version(project) == version  # dvc.lock still names the last good prepared data

    result = cvops(project.root, "data", "validate")
    assert result.returncode == 6, result.stderr[-3000:]
    assert "x decodes" in result.stderr and "fox/notes.png" in result.stderr
    assert "Traceback" not in result.stderr
