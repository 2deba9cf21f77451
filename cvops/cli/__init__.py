"""The `cvops` command line (entry layer): one module per command group, each command thin."""

from cvops.cli import data, explain, export, loop, models, params, run, schedule, serve, status, team  # noqa: F401  (they register their commands)
from cvops.cli.app import main

__all__ = ["main"]
