"""The docs' guides that serve nothing, executed as written (tests/docs.py), each in a copy of the project "Your
first model" trained: the ML engineer's, the data scientist's (whose reproduction is checked here), the
reviewer's and troubleshooting; and the installation check."""

import re
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.cli import cvops
from tests.docs import DOCS, RUN_BY, Shell, docs_env

pytestmark = pytest.mark.slow
# Each in a copy of the trained project; the two short ones share a copy and a shell
GUIDES = [["how-to/ml-engineer.md"], ["how-to/reviewer.md", "how-to/troubleshooting.md"]]
assert sorted(p for pages in GUIDES for p in pages) == sorted(p for p, by in RUN_BY.items() if "test_how_to" in by)


def test_the_installation_check(tmp_path) -> None:
    with Shell(tmp_path / "anywhere", docs_env(tmp_path / "home"), tmp_path / "shell") as shell:
        said = "".join(printed for _, printed in shell.run_page(DOCS / "getting-started" / "install.md"))
    assert re.search(r"^cvops \d+\.\d+\.\d+$", said, flags=re.MULTILINE) and "ok  cvops's requirements" in said


@pytest.mark.parametrize("pages", GUIDES, ids=lambda pages: "+".join(Path(p).stem for p in pages))
def test_how_to_guide(pages, trained_digits, tmp_path) -> None:
    """Each guide in a copy of the trained project of "Your first model" (version 1 is the challenger)."""
    project = trained_digits.copy(tmp_path / "demo")
    with Shell(project, docs_env(tmp_path / "home"), tmp_path / "shell") as shell:
        for page in pages:
            shell.run_page(DOCS / page)


def test_the_data_scientists_guide_reproduces_version_1_from_its_lineage(trained_digits, tmp_path) -> None:
    """The guide ends with `cvops models reproduce 1`: its commit in a worktree, its data through DVC, its logged
    params; the same data version and metrics within their intervals, in the rerun's own experiment and registered
    model; no alias of the original moves, and params.yaml is as the guide committed it."""
    root = trained_digits.copy(tmp_path / "demo")
    with Shell(root, docs_env(tmp_path / "home"), tmp_path / "shell") as shell:
        said = shell.run_page(DOCS / "how-to" / "data-scientist.md")
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
