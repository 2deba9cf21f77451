"""`cvops doctor`: is this machine and project ready to run cvops? Each problem comes with the command that fixes it.

Checked: the installed packages against cvops's requirements (and against requirements.lock where the project
has one), the servers and databases the project uses, that its folders are writable, free disk space, and the
system packages cvops uses (`make system-deps` installs the missing ones: `cvops doctor --apt` names them).
"""

import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from cvops.config import PARAMS_SCHEMA, Params, Project
from cvops.data.sources import FASHION_MNIST_DIR
from cvops.env import STATE_ENV

MIN_FREE_GB = 5.0  # a training's checkpoints, ONNX files and bentos, with room
SHOWN_VERSIONS = ("cvops", "torch", "timm", "zenml", "mlflow", "dvc", "bentoml", "onnxruntime", "evidently", "ray")


@dataclass(frozen=True)
class SystemPackage:
    """A program or data package from the operating system: its Debian name, what it is for, how to find it."""

    apt: str
    used_for: str
    present: Callable[[], bool]


SYSTEM_PACKAGES = (
    SystemPackage("git", "lineage (the commit of every model) and `cvops new`", lambda: bool(shutil.which("git"))),
    SystemPackage(
        "chromium",
        "`make docs` (every page opened in Chromium) and docs/screenshots.py (the docs' pictures)",
        lambda: any(shutil.which(name) for name in ("chromium", "chromium-browser")),
    ),
    SystemPackage(
        "curl", "the docs' requests to the service (`curl -F image=@...`)", lambda: bool(shutil.which("curl"))
    ),
    SystemPackage("jq", "the docs' examples that read `--json` output", lambda: bool(shutil.which("jq"))),
    SystemPackage(
        "dataset-fashion-mnist",
        "`cvops data import fashion-mnist` without --path, and bench/data.py",
        FASHION_MNIST_DIR.is_dir,
    ),
)


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    fix: str = ""  # the command (or step) that fixes it, for a failed check


class Diagnosis(BaseModel):
    """`cvops doctor`: versions, and each check with the command that fixes it."""

    versions: dict[str, str]
    checks: list[Check]

    @property
    def problems(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]


def missing_system_packages() -> list[str]:
    return [package.apt for package in SYSTEM_PACKAGES if not package.present()]


def diagnose(project: Project | None, params: Params | None) -> Diagnosis:
    """Every check; outside a project (None), the machine's only."""
    versions = {"python": platform.python_version()} | {name: _version(name) for name in SHOWN_VERSIONS}
    checks = [_requirements()]
    if project is not None and params is not None:
        checks += [
            _schema(project),
            _lock(project),
            *_servers(project, params),
            _writable(project),
            _disk(project.root),
            *_export_targets(params),
        ]
    else:
        checks.append(_disk(Path.cwd()))
    for package in SYSTEM_PACKAGES:
        found = package.present()
        checks.append(
            Check(
                name=f"system package {package.apt}",
                ok=found,
                detail=f"for {package.used_for}" + ("" if found else ": not installed"),
                fix="" if found else f"make system-deps (or: sudo apt-get install {package.apt})",
            )
        )
    return Diagnosis(versions=versions, checks=checks)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _requirements() -> Check:
    """cvops's own requirements (its wheel's metadata), each installed at a version it accepts."""
    from packaging.requirements import Requirement

    wrong = []
    for text in metadata.requires("cvops") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra (dev) or another platform's
        installed = _version(requirement.name)
        if installed == "not installed" or not requirement.specifier.contains(installed, prereleases=True):
            wrong.append(f"{requirement.name} {installed} (needs {requirement.specifier or 'any'})")
    return Check(
        name="cvops's requirements",
        ok=not wrong,
        detail="all installed" if not wrong else "; ".join(wrong[:6]),
        fix="" if not wrong else "pip install --upgrade cvops (in this repository: make install)",
    )


def _schema(project: Project) -> Check:
    schema = project.params_schema()
    return Check(
        name="params.yaml schema",
        ok=schema == PARAMS_SCHEMA,
        detail=f"{schema}"
        + ("" if schema == PARAMS_SCHEMA else f", older than this cvops's {PARAMS_SCHEMA}: read as written"),
        fix="" if schema == PARAMS_SCHEMA else "cvops params upgrade (then commit params.yaml)",
    )


def _lock(project: Project) -> Check:
    """The pinned set of requirements.lock, where the project has one (this repository does), as installed."""
    lock = project.root / "requirements.lock"
    if not lock.is_file():
        return Check(name="pinned set", ok=True, detail="no requirements.lock in this project")
    pins = dict(
        line.split("==", 1) for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#")
    )
    wrong = [f"{name} {_version(name)} (pinned {pin})" for name, pin in pins.items() if _version(name) != pin]
    return Check(
        name="pinned set",
        ok=not wrong,
        detail=f"{len(pins)} pins installed as pinned" if not wrong else f"{len(wrong)} differ: {'; '.join(wrong[:5])}",
        fix="" if not wrong else "make install (pip install -c requirements.lock -e .)",
    )


def _servers(project: Project, params: Params) -> list[Check]:
    from cvops.stack.status import answers, servers

    checks = []
    for server in servers(project, params):
        if server.name == "service":  # `cvops serve` runs when someone starts it: not a problem when it does not
            continue
        fix = "cvops init" if server.url.startswith("sqlite") else "start it (`cvops team up` for a team stack here)"
        checks.append(
            Check(name=f"{server.name} server", ok=server.answers, detail=server.url, fix="" if server.answers else fix)
        )
    state = os.environ.get(STATE_ENV)
    if state and "://" in state and not state.startswith("sqlite"):
        shown = state.split("@")[-1]  # no credentials
        up = answers(state, default_port=5432)
        fix = "" if up else f"start it, or fix {STATE_ENV}"
        checks.append(Check(name="state database", ok=up, detail=shown, fix=fix))
    return checks


def _export_targets(params: Params) -> list[Check]:
    """What export.targets needs beyond cvops's requirements: the extras' runtimes and converters."""
    from cvops.export.runtimes import COREML_EXTRA, LITERT_EXTRA, ONNX2TF_SETUP, onnx2tf

    checks = []
    if "coreml" in params.export.targets:
        found = _version("coremltools") != "not installed"
        checks.append(Check(name="coreml target", ok=found, detail="coremltools", fix="" if found else COREML_EXTRA))
    if "litert" in params.export.targets:
        converter = onnx2tf()
        parts = [("the LiteRT runtime", _version("ai-edge-litert") != "not installed", LITERT_EXTRA)]
        parts.append(("onnx2tf", converter is not None, ONNX2TF_SETUP))
        missing = [(name, fix) for name, ok, fix in parts if not ok]
        checks.append(
            Check(
                name="litert target",
                ok=not missing,
                detail=f"onnx2tf at {converter}" if not missing else " and ".join(n for n, _ in missing) + " not found",
                fix="; ".join(fix for _, fix in missing),
            )
        )
    return checks


def _writable(project: Project) -> Check:
    folders = [project.root, project.data_dir, project.mlflow_dir, project.reports_dir, project.monitoring_dir]
    refused = [str(f) for f in folders if not os.access(f if f.exists() else f.parent, os.W_OK)]
    return Check(
        name="writable folders",
        ok=not refused,
        detail="the project and its state folders" if not refused else ", ".join(refused),
        fix="" if not refused else f"give this user write access (chown -R {os.getuid()} ...)",
    )


def _disk(where: Path) -> Check:
    free = shutil.disk_usage(where).free / 2**30
    return Check(
        name="disk space",
        ok=free >= MIN_FREE_GB,
        detail=f"{free:.1f} GiB free at {where}",
        fix="" if free >= MIN_FREE_GB else f"free {MIN_FREE_GB:g} GiB or more (then `cvops gc --apply`)",
    )
