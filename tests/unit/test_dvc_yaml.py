"""dvc.yaml and cvops/config.py name the same paths, and each stage reads only its own params."""

from pathlib import Path

import yaml

from cvops.config import Params, Project
from cvops.data.versioning import PREPARED_OUT

REPO = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_stage_outputs_are_the_projects_paths():
    project = Project(REPO)
    assert STAGES["import"]["outs"] == [_rel(project.raw_dir)]
    assert STAGES["import"]["deps"] == [_rel(project.production_dir)]
    assert STAGES["validate"]["outs"] == [_rel(project.validated_dir)]
    assert list(STAGES["validate"]["metrics"][0]) == [_rel(project.reports_dir / "validation.json")]
    assert STAGES["prepare"]["outs"] == [_rel(project.prepared_dir)] == [PREPARED_OUT]


def test_no_data_stage_reads_training_params():
    sections = {p.split(".")[0] for stage in STAGES.values() for p in stage.get("params", [])}
    assert sections == {"task", "data", "validate", "prepare", "base"}
    assert all(key in Params.param_keys() for key in sections)


def test_stages_call_the_cvops_cli():
    assert all(stage["cmd"].startswith("cvops data ") for stage in STAGES.values())
