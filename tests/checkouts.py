"""A checkout as a user's clone has it: the repository's dvc.yaml and params.yaml (or the params a test
wants, written as params.yaml) committed in a fresh git repo. The one recipe every test that needs a checkout
uses."""

import subprocess
from pathlib import Path

import yaml

from cvops.config import Params, Project

REPO = Path(__file__).resolve().parents[1]
COMMIT = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "checkout"]


def new_checkout(
    root: Path, params: Params | None = None, overrides: tuple[str, ...] = (), gitignore: bool = False
) -> Path:
    """`root` (created if missing) as a git repo with dvc.yaml, params.yaml (`params` if given, edited by
    `overrides` as `cvops -S` edits it) and, with `gitignore`, the repository's .gitignore, in one commit."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    if params is None:
        (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    else:
        (root / "params.yaml").write_text(yaml.safe_dump(params.as_params(), sort_keys=False))
    if overrides:
        Project(root).set_params(list(overrides))
    if gitignore:
        (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    for command in (["init", "-q"], ["add", "."], COMMIT):
        subprocess.run(["git", *command], cwd=root, check=True)
    return root
