"""The user's own code named in params.yaml as `package.module:function`: a model (`train.model`), a dataset
reader (`data.source`). The module is imported from the project (its root first on `sys.path`, as `python -m`
puts the working folder there), so a project's own package needs no install; anything a ConfigError names is
wrong with the reference itself (no such module or function, not callable), in one line naming the key.
"""

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cvops.config import Project
from cvops.errors import ConfigError


def project_on_path() -> None:
    """Put the project's root first on `sys.path` (once), where the user's package lies."""
    try:
        root = str(Project.find().root)
    except ConfigError:  # not in a project: the working folder, as `python -m` has it
        root = str(Path.cwd())
    if root not in sys.path:
        sys.path.insert(0, root)


def load_function(reference: str, key: str) -> Callable[..., Any]:
    """The function `reference` names; a ConfigError naming `key` when it cannot be had."""
    module_name, _, name = reference.partition(":")
    project_on_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"{key}: {reference}: no module {err.name!r} (a package in the project's folder, or installed)"
        ) from err
    except Exception as err:  # the user's module failed while it was imported
        raise ConfigError(f"{key}: {reference}: importing {module_name} failed: {type(err).__name__}: {err}") from err
    function = getattr(module, name, None)
    if function is None:
        raise ConfigError(f"{key}: {reference}: {module_name} has no {name!r}")
    if not callable(function):
        raise ConfigError(f"{key}: {reference}: {name} is a {type(function).__name__}, not a function")
    return function


def top_package(reference: str) -> str:
    """The top-level package of a reference (what carries the user's code into a pickled model)."""
    return reference.split(":")[0].split(".")[0]
