"""What `--json` prints, for scripts: pydantic shapes whose JSON Schemas are committed in cvops/cli/schemas/, so a
change of shape is a change a reviewer sees, and the tests check each command's output against its schema.

`python -m cvops.cli.shapes` writes the schemas again after a deliberate change.
"""

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SCHEMAS = Path(__file__).parent / "schemas"


def shapes() -> dict[str, type[BaseModel]]:
    """Each printed shape by its schema's name (imported here only: the commands import their own)."""
    from cvops.data.versioning import DataStatus
    from cvops.monitoring.live import LiveComparison
    from cvops.registry.listing import VersionDetail, VersionList
    from cvops.stack.doctor import Diagnosis
    from cvops.stack.status import ProjectStatus
    from cvops.stack.team import TeamStatus

    return {
        "data-status": DataStatus,
        "doctor": Diagnosis,
        "models-compare-live": LiveComparison,
        "models-list": VersionList,
        "models-show": VersionDetail,
        "status": ProjectStatus,
        "team-status": TeamStatus,
    }


def schema(name: str) -> dict[str, Any]:
    """The committed JSON Schema of the shape `name`."""
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def write_schemas() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    for name, shape in shapes().items():
        text = json.dumps(shape.model_json_schema(), indent=2) + "\n"
        (SCHEMAS / f"{name}.schema.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_schemas()
