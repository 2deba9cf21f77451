"""Which commit produced a model, and whether the working tree had uncommitted changes."""

import subprocess
from pathlib import Path

from cvops.config import Params, Project
from cvops.registry.lineage import committed_differences, git_state


def test_git_state_reports_commit_and_dirtiness(project_dir):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True).stdout.strip()
    assert len(head) == 40
    assert git_state(project_dir) == (head, False)

    (project_dir / "notes.txt").write_text("untracked files do not make a run dirty")
    assert git_state(project_dir) == (head, False)

    params = project_dir / "params.yaml"
    params.write_text(params.read_text() + "\n# edited\n")
    assert git_state(project_dir) == (head, True)


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
