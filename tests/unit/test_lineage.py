"""Which commit produced a model, and whether the working tree had uncommitted changes."""

import json
import subprocess
from pathlib import Path

from cvops.config import Params, Project
from cvops.registry.lineage import committed_differences, git_state, lineage_tags


def test_git_state_reports_commit_and_dirtiness(project_dir):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True).stdout.strip()
    assert len(head) == 40
    assert git_state(project_dir) == (head, False)

    (project_dir / "notes.txt").write_text("untracked files do not make a run dirty")
    assert git_state(project_dir) == (head, False)

    # params.yaml and dvc.lock are recorded by the run (its parameters and overrides tag, lineage/dvc.lock)
    Project(project_dir).set_params(["train.epochs=2"])
    assert git_state(project_dir) == (head, False)

    tracked = project_dir / "code.py"  # a change the run does not record
    tracked.write_text("x = 1\n")
    subprocess.run(["git", "add", "code.py"], cwd=project_dir, check=True)
    assert git_state(project_dir) == (head, True)


def test_a_project_in_a_subfolder_of_its_repository_exempts_its_own_params_only(project_dir):
    sub = project_dir / "vision"
    sub.mkdir()
    (sub / "params.yaml").write_text((project_dir / "params.yaml").read_text())
    subprocess.run(["git", "add", "vision"], cwd=project_dir, check=True)
    subprocess.run(["git", "commit", "-qm", "sub", "--no-verify"], cwd=project_dir, check=True)
    Project(sub).set_params(["train.epochs=2"])
    assert git_state(sub)[1] is False
    Project(project_dir).set_params(["train.epochs=3"])  # the repository's other params.yaml: not this run's
    assert git_state(sub)[1] is True


def test_the_overrides_tag_holds_what_differs_from_the_commit(project_dir):
    project = Project(project_dir)
    assert lineage_tags(project_dir, project.params(), "abc")["overrides"] == ""
    with project.overlaid(None, ["train.epochs=2", "train.lr=0.01"]) as params:
        tags = lineage_tags(project_dir, params, "abc")
    assert json.loads(tags["overrides"]) == {"train.epochs": 2, "train.lr": 0.01}
    assert tags["git_dirty"] == "false"


def test_git_state_outside_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state(tmp_path) == ("unknown", False)


def test_a_run_says_which_values_differ_from_the_committed_params(project_dir):
    project = Project(project_dir)
    assert committed_differences(project_dir, project.params()) == []
    params, _ = project.set_params(["train.epochs=2"])
    assert committed_differences(project_dir, params) == [("train.epochs", Params().train.epochs, 2)]


def test_no_differences_outside_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    (tmp_path / "params.yaml").write_text(Path(__file__).parents[2].joinpath("params.yaml").read_text())
    assert committed_differences(tmp_path, Params()) == []
