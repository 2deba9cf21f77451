"""The shape the code must keep (ARCHITECTURE.md, STYLE.md): stage and task packages, modules that never import
each other in a circle (function-local imports included), a core that never imports the entry layer, a serving
path and review commands free of deep-learning frameworks, short functions with few parameters, thin commands,
and a layout the formatter owns."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CVOPS = REPO / "cvops"
FRAMEWORKS = ("torch", "timm", "sklearn", "albumentations")
SKIP = "fmt" + ": skip"  # in two pieces, so that this file does not hold what it looks for
# The entry layer: commands, the ZenML pipelines and steps, and the ZenML set-up of a checkout. Only it may
# import zenml; nothing below it imports it.
ENTRY = ("cvops.cli", "cvops.pipelines", "cvops.steps", "cvops.stack.checkout")
# The top of cvops/ holds what every room uses; each stage of the pipeline is a package, each task a folder
# under tasks/.
TOP_MODULES = {"__init__.py", "config.py", "console.py", "env.py", "errors.py", "references.py", "renames.py"}
TOP_MODULES |= {"timing.py"}
STAGES = {"cli", "data", "evaluation", "export", "monitoring", "pipelines", "registry", "serving", "stack", "steps"}
STAGES |= {"tasks", "training"}
DATA = {"project_template"}  # what `cvops new` writes into a project: files, not a package


def modules(root: Path = CVOPS) -> dict[str, ast.Module]:
    """Every module of the package at `root`, by its dotted name."""
    found = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text())
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:` (imports for annotations, never run)."""
    if isinstance(tree, ast.If) and isinstance(tree.test, ast.Name) and tree.test.id == "TYPE_CHECKING":
        return [node for child in tree.orelse for node in _runtime_nodes(child)]
    return [tree, *(node for child in ast.iter_child_nodes(tree) for node in _runtime_nodes(child))]


def imported(tree: ast.Module) -> set[str]:
    """Every module a file imports when it runs, at its top or inside a function (absolute imports, as cvops
    writes them)."""
    names = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def import_graph(found: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Which of the package's modules each one imports (`from a import b` counts `a.b` when it is a module)."""
    graph = {}
    for name, tree in found.items():
        targets = {target for target in imported(tree) if target in found}
        graph[name] = {t for t in targets if t != name and not name.startswith(f"{t}.")}  # not its own packages
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules that import each other in a circle (first = last), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target] if target in path else [*path, node, target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [node])):
            return cycle
    return None


def test_no_two_modules_import_each_other_even_inside_a_function() -> None:
    cycle = find_cycle(import_graph(modules()))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_a_cycle_made_of_a_function_local_import_is_found(tmp_path: Path) -> None:
    """The test above, on a copy of cvops with one planted function-local import closing a circle."""
    copy = tmp_path / "cvops"
    shutil.copytree(CVOPS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    preprocess = copy / "data" / "preprocess.py"  # the serving predictor imports it
    preprocess.write_text(preprocess.read_text() + "\n\ndef planted():\n    from cvops.serving.predictor import load\n")
    cycle = find_cycle(import_graph(modules(copy)))
    assert cycle is not None and {"cvops.data.preprocess", "cvops.serving.predictor"} <= set(cycle)


def test_the_core_never_imports_zenml_or_the_entry_layer() -> None:
    entry = tuple(f"{name}." for name in ENTRY)
    for name, tree in modules().items():
        if name in ENTRY or name.startswith(entry):
            continue
        found = {t for t in imported(tree) if t.split(".")[0] == "zenml" or t in ENTRY or t.startswith(entry)}
        assert not found, f"{name} (core) imports {found}: only the entry layer ({', '.join(ENTRY)}) may"


def test_the_top_of_the_package_holds_the_stages_and_what_every_stage_uses() -> None:
    top = {path.name for path in CVOPS.iterdir() if path.name != "__pycache__"}
    assert top == TOP_MODULES | STAGES | DATA
    assert all((CVOPS / stage / "__init__.py").is_file() for stage in STAGES)


def _names_a_task(node: ast.expr | None, names: tuple[str, ...]) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_task(element, names) for element in node.elts)
    return isinstance(node, ast.Constant) and node.value in names


def _called_task(node: ast.expr) -> bool:
    if isinstance(node, ast.NamedExpr):
        node = node.target
    return (isinstance(node, ast.Attribute) and node.attr == "task") or (
        isinstance(node, ast.Name) and node.id == "task"
    )


def task_branches(tree: ast.Module, names: tuple[str, ...]) -> list[int]:
    """The lines that branch on the task: a comparison with a task's name (`x == "detection"`, `in (...)`) or of
    something called `task` with anything else (`ref.task != KIND`), or a dict keyed by task names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            equality = any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
            called_task = {_called_task(side) for side in sides}  # both: two tasks must match, not a branch
            if any(_names_a_task(side, names) for side in sides) or (equality and called_task == {True, False}):
                found.append(node.lineno)
        elif isinstance(node, ast.Dict) and any(_names_a_task(key, names) for key in node.keys):
            found.append(node.lineno)
    return found


def test_what_differs_by_task_is_in_the_task_folders() -> None:
    """Stages ask `cvops.tasks.task(name)` for a task's parts; they never branch on its name."""
    from cvops.tasks import task_names

    branches = {
        name: lines
        for name, tree in modules().items()
        if not name.startswith("cvops.tasks") and (lines := task_branches(tree, task_names()))
    }
    assert not branches, f"branches on the task outside cvops/tasks/ (module: lines): {branches}"


def test_a_branch_on_the_task_is_found() -> None:
    """The test above, on planted branches."""
    planted = 'if ref.task == "detection":\n    pass\nSERVICES = {"classification": 1}\nok = task != other\n'
    assert task_branches(ast.parse(planted), ("classification", "detection")) == [1, 3, 4]


def test_the_wheel_installs_nothing_but_cvops() -> None:
    """pipelines/ and steps/ used to install as top-level `pipelines` and `steps` packages, colliding with any
    other project's; they are cvops.pipelines and cvops.steps (the top-level folders are links to them)."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    packages = apply_configuration(Distribution(), REPO / "pyproject.toml").packages
    assert {name.split(".")[0] for name in packages} == {"cvops"}
    assert {"cvops.pipelines", "cvops.steps", "cvops.tasks.detection"} <= set(packages)
    assert (REPO / "steps").resolve() == CVOPS / "steps" and (REPO / "pipelines").resolve() == CVOPS / "pipelines"


ENVIRON_READERS = ("os.environ.get", "os.environ.setdefault", "os.getenv")


def environment_names(tree: ast.Module) -> set[str]:
    """The string literals of a module that name an environment variable: any "CVOPS_..." (an f-string's
    part too) and any literal key of os.environ[...] or of a call in ENVIRON_READERS."""
    names = set()
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        elif isinstance(node, ast.Call) and node.args and ast.unparse(node.func) in ENVIRON_READERS:
            key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("CVOPS_"):
            names.add(node.value)
    return names


def test_every_environment_variable_is_named_in_cvops_env_only() -> None:
    planted = ast.parse('os.environ["A"], os.getenv("B"), os.environ.setdefault("C", "1"), f"CVOPS_{role}"')
    assert environment_names(planted) == {"A", "B", "C", "CVOPS_"}
    found = {name: environment_names(tree) for name, tree in modules().items() if name != "cvops.env"}
    assert {name: names for name, names in found.items() if names} == {}


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
    "module",
    [
        "cvops.registry.model_registry",
        "cvops.registry.review",
        "cvops.serving.loading",
        "cvops.tasks.detection.predictor",
        "cvops.cli",
    ],
)
def test_registry_review_and_predictor_import_no_framework(module: str) -> None:
    assert loaded_after(f"import {module}") == []


def test_the_service_runs_where_no_framework_and_no_mlflow_is_installed() -> None:
    """What a bento installs is enough: the service module imports with torch, timm, scikit-learn,
    albumentations and MLflow unimportable."""
    assert loaded_after("import cvops.serving.service", blocked=(*FRAMEWORKS, "mlflow")) == []


def functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Named parameters, without self/cls: more than 8 want a parameter object."""
    args = function.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    return len(named) - (1 if named and named[0].arg in ("self", "cls") else 0)


def test_no_function_is_longer_than_60_lines_or_takes_more_than_8_parameters() -> None:
    found = modules()
    long = [
        f"{name}.{f.name}: {f.end_lineno - f.lineno + 1} lines"
        for name, tree in found.items()
        for f in functions(tree)
        if f.end_lineno - f.lineno + 1 > 60
    ]
    many = [f"{name}.{f.name}" for name, tree in found.items() for f in functions(tree) if parameters(f) > 8]
    assert (long, many) == ([], [])


def test_the_formatter_owns_the_layout() -> None:
    """No comment that turns the formatter off anywhere: a line packed to pass the line rule is a function to
    split."""
    skipped = [
        str(path.relative_to(REPO))
        for top in ("cvops", "tests", "bench", "docs", "infra")
        for path in (REPO / top).rglob("*.py")
        if SKIP in path.read_text()
    ]
    assert skipped == []


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
