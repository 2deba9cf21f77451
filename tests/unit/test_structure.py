"""The shape the code must keep (ARCHITECTURE.md, STYLE.md): layers that import downwards only, a serving path
and review commands free of deep-learning frameworks, short functions, thin commands."""

import ast
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CVOPS = REPO / "cvops"
FRAMEWORKS = ("torch", "timm", "sklearn", "albumentations")
ENTRY = {"cvops.cli", "cvops.launch", "cvops.scheduler", "cvops.stack", "cvops.reproduce", "cvops.traffic"}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in CVOPS.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text())
    return found


def imported(tree: ast.Module) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def room(module: str) -> str:
    """The unit layers are drawn between: a sub-package (cvops.data, cvops.serving, ...) or a top-level module."""
    return ".".join(module.split(".")[:2])


def test_the_import_graph_of_cvops_has_no_cycle() -> None:
    """monitoring and serving used to import each other; nothing may depend on something that depends on it."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, tree in modules().items():
        graph[room(name)] |= {room(t) for t in imported(tree) if t.startswith("cvops.") and room(t) != room(name)}
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            assert state.get(target) != "open", f"import cycle: {' -> '.join([*path, node, target])}"
            if target not in state:
                visit(target, [*path, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_core_never_imports_zenml_steps_or_pipelines() -> None:
    for name, tree in modules().items():
        if room(name) in ENTRY:
            continue
        found = {t for t in imported(tree) if t.split(".")[0] in ("zenml", "steps", "pipelines")}
        assert not found, f"{name} (core) imports {found}: only the entry layer may"


def loaded_after(code: str, blocked: tuple[str, ...] = ()) -> list[str]:
    """The frameworks in sys.modules after running `code` in a fresh interpreter with `blocked` unimportable."""
    script = (
        "import json, sys\n"
        f"for name in {blocked!r}:\n    sys.modules[name] = None\n"
        f"{code}\n"
        f"print(json.dumps([m for m in {FRAMEWORKS!r} if sys.modules.get(m) is not None]))"
    )
    env = {**os.environ, "CVOPS_ROOT": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module", ["cvops.registry", "cvops.serving.predictor", "cvops.serving.detector", "cvops.review", "cvops.cli"]
)
def test_registry_review_and_predictor_import_no_framework(module: str) -> None:
    assert loaded_after(f"import {module}") == []


def test_the_service_runs_where_no_framework_and_no_mlflow_is_installed() -> None:
    """What a bento installs is enough: the service module imports with torch, timm, scikit-learn,
    albumentations and MLflow unimportable."""
    assert loaded_after("import cvops.serving.service", blocked=(*FRAMEWORKS, "mlflow")) == []


def functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_no_function_is_longer_than_60_lines() -> None:
    long = [
        f"{name}.{f.name}: {f.end_lineno - f.lineno + 1}"
        for name, tree in modules().items()
        for f in functions(tree)
        if f.end_lineno - f.lineno + 1 > 60
    ]
    assert not long


def test_every_command_body_is_thin() -> None:
    """A command parses, calls one function and renders: at most 30 lines besides its docstring."""
    fat = []
    for name, tree in modules().items():
        if not name.startswith("cvops.cli."):
            continue
        for f in functions(tree):
            commands = [d for d in f.decorator_list if "command" in ast.unparse(d) or "group" in ast.unparse(d)]
            body = f.body[1:] if f.body and isinstance(f.body[0], ast.Expr) else f.body  # without the docstring
            if commands and body and body[-1].end_lineno - body[0].lineno + 1 > 30:
                fat.append(f"{name}.{f.name}")
    assert not fat


def test_the_package_metadata_is_read_without_deprecation_warnings() -> None:
    """`make install` printed setuptools' `project.license` deprecation warning at every install."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_configuration(Distribution(), REPO / "pyproject.toml")
