"""What `--json` prints has a committed JSON Schema (cvops/cli/schemas/): the shapes cvops prints are the
committed ones, so a script's parser breaks only on a change a reviewer approved."""

import pytest

from cvops.cli.shapes import SCHEMAS, schema, shapes


@pytest.mark.parametrize("name", sorted(shapes()))
def test_the_committed_schema_is_the_shape_cvops_prints(name: str) -> None:
    assert schema(name) == shapes()[name].model_json_schema(), (
        f"{name}'s shape changed: after a deliberate change, `python -m cvops.cli.shapes` writes its schema"
    )


def test_every_committed_schema_has_its_shape() -> None:
    assert {path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.json")} == set(shapes())
