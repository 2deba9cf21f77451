"""The docs, executed: every shell block of Getting started and the how-to guides runs here as written, in one
shell per page (tests/docs.py), from where the page says it starts. Two pages run elsewhere, since the session
needs what they build: "Your first model" builds the session's trained project (tests/conftest.py) and the
team guide the team stack (tests/team/conftest.py). The pages that serve on port 3000 all run here, one after
another."""

import csv
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from cvops.tasks.detection.scenes import digit_scenes_source
from tests.cli import cvops
from tests.conftest import REPO
from tests.docs import DOCS, RUN_BY, Shell, docs_env
from tests.images import write_coco

pytestmark = pytest.mark.slow
# The how-to guides, each in a copy of the trained project; the two short ones share a copy and a shell
GUIDES = [["how-to/ml-engineer.md"], ["how-to/operator.md"], ["how-to/reviewer.md", "how-to/troubleshooting.md"]]
assert sorted(p for pages in GUIDES for p in pages) == sorted(p for p, by in RUN_BY.items() if "test_how_to" in by)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a virtual environment holding the cvops wheel (installed without its dependencies,
    which come from this environment's site-packages, where cvops itself is only an editable link)."""
    root = tmp_path_factory.mktemp("installed")
    build = ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(root / "dist")]
    subprocess.run([sys.executable, *build], check=True, capture_output=True)
    (wheel,) = (root / "dist").glob("cvops-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(
        subprocess.check_output(
            [venv / "bin" / "python", "-c", "import site; print(site.getsitepackages()[0])"], text=True
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # its .pth files are not run
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv / "bin"


def write_colour_folder(root: Path, per_class: int = 20) -> Path:
    """A folder per class of small photos that any model tells apart by their colour, with some noise."""
    rng = np.random.default_rng(0)
    for name, colour in {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (24, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:02d}.jpg")
    return root


def served(printed: str) -> str:
    """The service's JSON answer in what a block printed (curl ends it without a newline)."""
    start = printed.index('{"predictions"')
    return printed[start : printed.index("\n", start) if "\n" in printed[start:] else None]


def home_with_images(home: Path) -> Path:
    """The scratch HOME of the "your own images" page: ~/images (a folder per class) and ~/scenes (COCO)."""
    write_colour_folder(home / "images")
    write_coco(digit_scenes_source(80, seed=3).scenes, home / "scenes")
    return home


def test_the_installation_check(tmp_path) -> None:
    shell = Shell(tmp_path / "anywhere", docs_env(tmp_path / "home"), tmp_path / "shell")
    try:
        said = "".join(printed for _, printed in shell.run_page(DOCS / "getting-started" / "install.md"))
    finally:
        shell.close()
    assert re.search(r"^cvops \d+\.\d+\.\d+$", said, flags=re.MULTILINE) and "ok  cvops's requirements" in said


def test_your_own_images_from_a_new_project_to_a_served_answer(installed, tmp_path) -> None:
    """With the cvops wheel installed in an environment of its own (nothing of this repository in reach)."""
    home = home_with_images(tmp_path / "home")
    shell = Shell(tmp_path / "work", docs_env(home), tmp_path / "shell", bin_dir=installed)
    try:
        where = shell.run_inline("python -c 'import cvops; print(cvops.__file__)'")
        assert Path(where.strip()).is_relative_to(installed.parent), where
        said = [printed for _, printed in shell.run_page(DOCS / "getting-started" / "your-images.md")]
    finally:
        shell.close()
    answer = json.loads(next(served(printed) for printed in said if '{"predictions"' in printed))
    assert answer["predictions"][0]["label"] == "blue", answer  # ~/images/blue/blue_00.jpg is the first image


def test_the_first_review_and_the_first_served_model(trained_digits, tmp_path) -> None:
    project = trained_digits.copy(tmp_path / "demo")
    shell = Shell(project, docs_env(tmp_path / "home"), tmp_path / "shell")
    try:
        reviewed = shell.run_page(DOCS / "getting-started" / "review.md")
        served_page = shell.run_page(DOCS / "getting-started" / "serve.md")
    finally:
        shell.close()
    assert "champion" in "".join(printed for _, printed in reviewed)
    answer = json.loads(served("".join(printed for _, printed in served_page)))
    assert answer["model_version"] == "1" and answer["predictions"][0]["label"] in [str(d) for d in range(10)]


@pytest.mark.parametrize("pages", GUIDES, ids=lambda pages: "+".join(Path(p).stem for p in pages))
def test_how_to_guide(pages, trained_digits, tmp_path) -> None:
    """Each guide in a copy of the trained project of "Your first model" (version 1 is the challenger)."""
    project = trained_digits.copy(tmp_path / "demo")
    shell = Shell(project, docs_env(tmp_path / "home"), tmp_path / "shell")
    try:
        for page in pages:
            shell.run_page(DOCS / page)
    finally:
        shell.close()


def test_the_data_scientists_guide_reproduces_version_1_from_its_lineage(trained_digits, tmp_path) -> None:
    """The guide ends with `cvops models reproduce 1`: its commit in a worktree, its data through DVC, its logged
    params; the same data version and metrics within their intervals, in the rerun's own experiment and registered
    model; no alias of the original moves, and params.yaml is as the guide committed it."""
    root = trained_digits.copy(tmp_path / "demo")
    shell = Shell(root, docs_env(tmp_path / "home"), tmp_path / "shell")
    try:
        said = shell.run_page(DOCS / "how-to" / "data-scientist.md")
    finally:
        shell.close()
    reproduced = next(printed for block, printed in said if "cvops models reproduce" in block.text)
    assert "reproduced: same data version" in reproduced and "git_dirty" not in reproduced, reproduced[-2000:]
    assert "values that differ from commit" in reproduced and "data.source=digits" in reproduced
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    original = client.get_model_version("cvops-classifier", "1")
    rerun = client.get_model_version("cvops-classifier-reproduce", "1")
    assert rerun.tags["data_version"] == original.tags["data_version"]
    assert rerun.tags["git_commit"] == original.tags["git_commit"]
    assert client.get_experiment(client.get_run(rerun.run_id).info.experiment_id).name == "cvops-reproduce"
    assert original.tags["reproduce_verdict"] == "reproduced" and original.tags["reproduce_run"] == rerun.run_id
    assert original.tags["reproduced_at"].startswith("20") and "reproduce_accuracy_diff" in original.tags
    aliases = client.get_registered_model("cvops-classifier").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"challenger": "1"}
    status = subprocess.run(["git", "status", "--porcelain", "params.yaml"], cwd=root, capture_output=True, text=True)
    assert status.stdout == ""  # as the guide committed it: reproduce wrote the version's params elsewhere
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=root, capture_output=True, text=True).stdout
    assert len(worktrees.splitlines()) == 1  # the temporary worktree is gone
    shown = cvops(root, "models", "show", "1")
    assert f"mlflow_run:        {original.run_id}" in shown.stdout
    assert "train.model: resnet10t (default: tf_efficientnet_lite0)" in shown.stdout
    assert "reproduce_verdict: reproduced" in shown.stdout


def test_the_examples_project_trains_its_own_model_reader_and_augmentation_and_serves(tmp_path: Path) -> None:
    """examples/shapes/README.md, from a folder holding a copy of examples/ (as the repository's root does), with
    params.yaml as the README sets it (no overlay: the project's own pieces are what is tested)."""
    from cvops.config import Project

    shutil.copytree(REPO / "examples", tmp_path / "work" / "examples")
    env = {k: v for k, v in docs_env(tmp_path / "home").items() if k != "CVOPS_OVERLAY"}
    shell = Shell(tmp_path / "work", env, tmp_path / "shell")
    try:
        said = shell.run_page(REPO / "examples" / "shapes" / "README.md")
    finally:
        shell.close()
    project = tmp_path / "work" / "shapes"
    params = Project(project).params()  # each piece named in params.yaml, as the README set it
    assert (params.train.model, params.data.source) == ("shapes_kit.model:small_cnn", "shapes_kit.reader:samples")
    assert params.train.augment == "augment.yaml"
    truth = dict(csv.reader((project / "images" / "labels.csv").open()))["photo_000.png"]
    answer = json.loads(served(said[-1][1]))
    assert answer["predictions"][0]["label"] == truth, answer
