"""The command line as a user meets it, in seconds: every mistake on the command line is one line on stderr
and exit code 2, checked before any work starts (no checkout or trained model needed)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from cvops.config import Project
from tests.cli import assert_one_line_error, clean_env, cvops
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["data", "import", "nonsense"], ["'nonsense' is not one of", "cvops data import --help"]),
        (["nope"], ["No such command 'nope'", "cvops --help"]),
        (["models", "reject", "3"], ["--reason", "cvops models reject --help"]),
        (["run", "monitoring", "--since", "yesterday"], ["--since", "6h"]),
        (["run", "monitoring", "--window", "0"], ["--window", "0"]),
        (["run", "monitoring", "--since", "6h", "--window", "5"], ["--window or --since, not both"]),
        (["run", "training", "--overlay", "no-such-overlay.yaml"], ["--overlay", "no-such-overlay.yaml"]),
        (["traffic", "--url", "localhost:3000"], ["--url", "http://"]),
        (["serve", "--port", "70000"], ["--port", "70000"]),
        (["export", "1"], ["Missing option '--format'. Choose from: onnx, openvino, litert, coreml"]),
        (["export", "1", "--format", "tflite"], ["'tflite' is not one of", "cvops export --help"]),
    ],
)
def test_a_command_line_mistake_is_one_line_and_exit_2(tmp_path: Path, args: list[str], words: list[str]) -> None:
    result = cvops(tmp_path, *args)
    assert_one_line_error(result, 2, *words)
    assert "Usage:" not in result.stderr and result.stdout == ""


def test_outside_a_checkout_the_error_says_where_to_run(tmp_path: Path) -> None:
    assert_one_line_error(cvops(tmp_path, "models", "list"), 2, "no params.yaml", "cvops new DIR")


def test_new_makes_a_project_that_loads_and_refuses_a_folder_in_use(tmp_path: Path) -> None:
    made = cvops(tmp_path, "new", "parts", "--task", "detection")
    assert made.returncode == 0, made.stderr[-2000:]
    root = tmp_path / "parts"
    params = Project(root).params()  # the template's params.yaml, set to the task and a source it learns from
    assert (params.task, params.data.source) == ("detection", "digit-scenes")
    assert (root / ".git").is_dir() and (root / ".dvc" / "config").is_file() and (root / "overlays").is_dir()
    assert "/mlflow/" in (root / ".gitignore").read_text().splitlines()
    assert "cvops init" in made.stdout and "Initialized DVC" not in made.stdout  # cvops says what comes next

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert_one_line_error(cvops(tmp_path, "new", "busy"), 2, "not an empty folder")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "parts"]  # nothing half-made beside them


def test_shell_completion_set_up_as_the_readme_says_completes_commands(tmp_path: Path) -> None:
    env = clean_env() | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    readme = 'eval "$(_CVOPS_COMPLETE=bash_source cvops)"'
    registered = subprocess.run(
        ["bash", "-c", f"{readme} && complete -p cvops"], env=env, capture_output=True, text=True
    )
    assert "_cvops_completion" in registered.stdout, registered.stderr[-2000:]
    asked = {"COMP_WORDS": "cvops models pro", "COMP_CWORD": "2", "_CVOPS_COMPLETE": "bash_complete"}
    answer = subprocess.run(["cvops"], cwd=tmp_path, env=env | asked, capture_output=True, text=True)
    assert answer.stdout.split() == ["plain,promote"], answer.stderr[-2000:]


def test_help_still_prints_usage_and_exits_0(tmp_path: Path) -> None:
    result = cvops(tmp_path, "run", "training", "--help")
    assert result.returncode == 0 and "--overlay" in result.stdout and "Examples:" in result.stdout


def test_init_for_a_team_names_the_missing_servers_and_creates_nothing(project_dir: Path) -> None:
    before = sorted(project_dir.rglob("*"))
    result = cvops(project_dir, "init", "--stack", "team", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert_one_line_error(result, 2, "MLFLOW_TRACKING_USERNAME", "ZENML_STORE_URL", "CVOPS_S3_URL", ".team/env")
    assert "MLFLOW_TRACKING_URI," not in result.stderr  # that one is set
    assert sorted(project_dir.rglob("*")) == before


def test_params_set_writes_the_file_prints_the_diff_and_a_bad_value_changes_nothing(project_dir: Path) -> None:
    params = project_dir / "params.yaml"
    result = cvops(project_dir, "params", "set", "train.epochs=9", "validate.allowed_modes=[L, RGB, CMYK]")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "-  epochs: " in result.stdout and "+  epochs: 9" in result.stdout
    assert "+  allowed_modes: [L, RGB, CMYK]" in result.stdout  # a list stays on its line, comment kept
    assert Project(project_dir).params().train.epochs == 9
    written = params.read_bytes()
    assert_one_line_error(cvops(project_dir, "params", "set", "train.epochs=9", "train.lr=-1"), 2, "train.lr")
    assert params.read_bytes() == written
    assert "unchanged" in cvops(project_dir, "params", "set", "train.epochs=9").stdout


def test_params_upgrade_prints_the_diff_of_an_old_file_and_then_nothing(project_dir: Path) -> None:
    saved = REPO / "tests" / "assets" / "saved-by-0.1" / "params.yaml"
    (project_dir / "params.yaml").write_text(saved.read_text())
    doctor = cvops(project_dir, "doctor", "--json")  # an old file is read, with the command that upgrades it
    assert "is schema 1: read as it was written" in doctor.stderr and "cvops params upgrade" in doctor.stderr
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["params.yaml schema"]["fix"].startswith("cvops params upgrade")
    result = cvops(project_dir, "params", "upgrade")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "+schema: 5" in result.stdout and "+  resize: stretch" in result.stdout
    assert "+  decoder: full" in result.stdout and "+  fine_tune_epochs: 2" in result.stdout
    assert "+  max_leakage: null" in result.stdout and "+  enabled: false" in result.stdout
    assert "schema 1 -> 5" in result.stdout
    again = cvops(project_dir, "params", "upgrade")
    assert "schema 5 already" in again.stdout and "+" not in again.stdout


def test_exit_codes_come_from_one_table() -> None:  # which the docs' reference shows (docs/hooks/reference.py)
    from cvops.errors import exit_codes

    table = dict(exit_codes())
    # no error class anywhere in cvops brings a code of its own
    declared = re.compile(r"^\s+exit_code = (\d+)", flags=re.MULTILINE)
    for path in (REPO / "cvops").rglob("*.py"):
        for code in declared.findall(path.read_text(encoding="utf-8")):
            assert int(code) in table, f"{path}: exit code {code} is not in cvops.errors.exit_codes()"


def test_a_missing_input_file_is_exit_3_in_every_command(project_dir: Path) -> None:
    for command in (["feedback", "import"], ["labels", "import"]):  # explain's images too: tests/integration
        assert_one_line_error(cvops(project_dir, *command, "nope.csv"), 3, "nope.csv: no such file")


def test_an_unforeseen_error_is_one_line_naming_the_file_with_its_traceback(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cvops.cli.app import unforeseen

    try:
        {}["missing"]
    except KeyError as err:
        with pytest.raises(SystemExit) as exited:
            unforeseen(err)
    assert exited.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: unexpected KeyError: 'missing' (its traceback is in ")
    (written,) = (project_dir / "reports" / "errors").iterdir()
    assert str(written) in line and "Traceback" in written.read_text() and '{}["missing"]' in written.read_text()


def test_doctor_names_what_the_export_targets_need(project_dir: Path, tmp_path: Path) -> None:
    assert cvops(project_dir, "params", "set", "export.targets=[coreml,litert]").returncode == 0
    missing = cvops(project_dir, "doctor", "--json", env={"CVOPS_ONNX2TF": str(tmp_path / "no-onnx2tf")})
    checks = {check["name"]: check for check in json.loads(missing.stdout)["checks"]}
    assert checks["coreml target"]["ok"]  # make install installs the coreml extra
    litert = checks["litert target"]
    assert not litert["ok"] and litert["detail"] == "onnx2tf not found" and "make litert" in litert["fix"]
    converter = str(REPO / ".venv-litert" / "bin" / "onnx2tf")  # make litert (make test)
    found = cvops(project_dir, "doctor", "--json", env={"CVOPS_ONNX2TF": converter})
    assert {check["name"]: check for check in json.loads(found.stdout)["checks"]}["litert target"]["ok"]


def test_doctor_names_each_problem_with_its_fix_and_exits_15(project_dir: Path, tmp_path: Path) -> None:
    from cvops.cli.shapes import schema

    (project_dir / "requirements.lock").write_text((REPO / "requirements.lock").read_text())  # as in a clone
    result = cvops(project_dir, "doctor", "--json")  # `cvops init` has not run: no MLflow store yet
    assert_one_line_error(result, 15, "mlflow server")
    diagnosis = json.loads(result.stdout)
    jsonschema.validate(diagnosis, schema("doctor"))
    checks = {check["name"]: check for check in diagnosis["checks"]}
    assert not checks["mlflow server"]["ok"] and checks["mlflow server"]["fix"] == "cvops init"
    assert checks["pinned set"]["ok"] and "pins installed as pinned" in checks["pinned set"]["detail"]  # make install
    assert diagnosis["versions"]["torch"] != "not installed"
    (project_dir / "requirements.lock").write_text("numpy==0.0.1\n")  # a lock this environment does not match
    stale = {c["name"]: c for c in json.loads(cvops(project_dir, "doctor", "--json").stdout)["checks"]}
    assert not stale["pinned set"]["ok"] and "numpy" in stale["pinned set"]["detail"]
    assert stale["pinned set"]["fix"].startswith("make install")
    outside = cvops(tmp_path, "doctor")  # the machine's checks, after `make system-deps`
    assert outside.returncode == 0, outside.stdout[-2000:] + outside.stderr[-2000:]
    assert "ok  system package chromium" in outside.stdout
    assert cvops(tmp_path, "doctor", "--apt").stdout.strip() == ""  # nothing for `make system-deps` to install
