"""What `--json` prints has a committed JSON Schema (cvops/registry/schemas/): the shapes cvops prints are the
committed ones, so a script's parser breaks only on a change a reviewer approved."""

import pytest

from cvops.registry.listing import SHAPES, schema


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_committed_schema_is_the_shape_cvops_prints(name: str) -> None:
    assert schema(name) == SHAPES[name].model_json_schema(), (
        f"{name}'s shape changed: after a deliberate change, `python -m cvops.registry.listing` writes its schema"
    )
