"""`cvops new`: a project of one's own, anywhere, from the files the package carries (cvops/project_template).

The template's params.yaml, dvc.yaml and overlays are this repository's own (links in the source tree, copies in
the wheel): the repository's root is the reference project, and a new project starts where it stands.
"""

import shutil
import subprocess
from importlib import resources
from pathlib import Path

from cvops import tasks
from cvops.config import PARAMS_FILE, Project
from cvops.console import quiet
from cvops.errors import ConfigError

TEMPLATE = "project_template"
# the template's file names that are dotfiles in a project (a package's data files are kept without the dot)
DOTFILES = {"gitignore": ".gitignore"}


def create_project(root: Path, task: str) -> list[str]:
    """A working project in `root` (new, or an empty folder): the template's files, params.yaml set to `task` and
    its first data source, `git init` and `dvc init` done. Built beside `root` and moved there once whole: a
    failure leaves nothing a later `cvops new` would take for a project. Returns what was made, in order."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root} is not an empty folder: name a new or empty one (`cvops new DIR`)")
    source = tasks.task(task).sources[0]
    building = root.parent / f".{root.name}.partial"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        made = _copy_template(building)
        Project(building).set_params([f"task={task}", f"data.source={source}"])
        made.append(f"{PARAMS_FILE}: task {task}, data.source {source}")
        subprocess.run(["git", "init", "-q"], cwd=building, check=True)
        made.append("git repository")
        init_dvc(building)
        made.append("DVC repository (.dvc/)")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if root.exists():
        root.rmdir()
    building.rename(root)
    return made


def init_dvc(root: Path) -> bool:
    """`dvc init` in `root` (without git when it is no git repository), quietly; False when it was done before."""
    if (root / ".dvc").is_dir():
        return False
    from dvc.repo import Repo

    with quiet("dvc"):  # "Initialized DVC repository. You can now commit...": cvops says what to commit
        Repo.init(str(root), no_scm=not (root / ".git").exists())
    return True


def _copy_template(root: Path) -> list[str]:
    template = resources.files("cvops") / TEMPLATE
    made = []
    with resources.as_file(template) as source:
        for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
            relative = path.relative_to(source)
            target = root / relative.parent / DOTFILES.get(relative.name, relative.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)  # the file's content, never a link into the installed package
            made.append(str(target.relative_to(root)))
    return made
