"""The docs' pages that serve on port 3000, executed as written (tests/docs.py), one after another: your own
images from a new project to a served answer, your first review and served model, the operator's guide, and the
examples project. The other guides: test_docs_guides.py; "Your first model" builds the session's trained project
(tests/conftest.py) and the team guide the team stack (tests/team/conftest.py)."""

import csv
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvops.tasks.detection.scenes import digit_scenes_source
from tests.conftest import REPO
from tests.docs import DOCS, Shell, docs_env
from tests.images import write_coco

pytestmark = pytest.mark.slow


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


def test_your_own_images_from_a_new_project_to_a_served_answer(installed, tmp_path) -> None:
    """With the cvops wheel installed in an environment of its own (nothing of this repository in reach)."""
    home = home_with_images(tmp_path / "home")
    with Shell(tmp_path / "work", docs_env(home), tmp_path / "shell", bin_dir=installed) as shell:
        where = shell.run_inline("python -c 'import cvops; print(cvops.__file__)'")
        assert Path(where.strip()).is_relative_to(installed.parent), where
        said = [printed for _, printed in shell.run_page(DOCS / "getting-started" / "your-images.md")]
    answer = json.loads(next(served(printed) for printed in said if '{"predictions"' in printed))
    assert answer["predictions"][0]["label"] == "blue", answer  # ~/images/blue/blue_00.jpg is the first image


def test_the_first_review_and_the_first_served_model(trained_digits, tmp_path) -> None:
    project = trained_digits.copy(tmp_path / "demo")
    with Shell(project, docs_env(tmp_path / "home"), tmp_path / "shell") as shell:
        reviewed = shell.run_page(DOCS / "getting-started" / "review.md")
        served_page = shell.run_page(DOCS / "getting-started" / "serve.md")
    assert "champion" in "".join(printed for _, printed in reviewed)
    answer = json.loads(served("".join(printed for _, printed in served_page)))
    assert answer["model_version"] == "1" and answer["predictions"][0]["label"] in [str(d) for d in range(10)]


def test_the_operators_guide(trained_digits, tmp_path) -> None:
    """In a copy of the trained project of "Your first model": serve, feedback, drift, the labels loop, a canary."""
    project = trained_digits.copy(tmp_path / "demo")
    with Shell(project, docs_env(tmp_path / "home"), tmp_path / "shell") as shell:
        said = shell.run_page(DOCS / "how-to" / "operator.md")
    compared = next(printed for block, printed in said if "cvops models compare-live" in block.text)
    assert "canary" in compared and "champion" in compared, compared[-2000:]


def test_the_examples_project_trains_its_own_model_reader_and_augmentation_and_serves(tmp_path: Path) -> None:
    """examples/shapes/README.md, from a folder holding a copy of examples/ (as the repository's root does), with
    params.yaml as the README sets it (no overlay: the project's own pieces are what is tested)."""
    from cvops.config import Project

    shutil.copytree(REPO / "examples", tmp_path / "work" / "examples")
    env = {k: v for k, v in docs_env(tmp_path / "home").items() if k != "CVOPS_OVERLAY"}
    with Shell(tmp_path / "work", env, tmp_path / "shell") as shell:
        said = shell.run_page(REPO / "examples" / "shapes" / "README.md")
    project = tmp_path / "work" / "shapes"
    params = Project(project).params()  # each piece named in params.yaml, as the README set it
    assert (params.train.model, params.data.source) == ("shapes_kit.model:small_cnn", "shapes_kit.reader:samples")
    assert params.train.augment == "augment.yaml"
    truth = dict(csv.reader((project / "images" / "labels.csv").open()))["photo_000.png"]
    answer = json.loads(served(said[-1][1]))
    assert answer["predictions"][0]["label"] == truth, answer
