"""A version is addressed the same way everywhere: `ModelRegistry.resolve` takes a version number or an alias
(champion, challenger, previous), on an MLflow store with versions registered by hand (no training)."""

from pathlib import Path

import mlflow
import pytest

from cvops.errors import RegistryError
from cvops.registry.model_registry import ModelRegistry


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module (making its schema takes seconds); each test registers its own model."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def registry(store: Path, request: pytest.FixtureRequest) -> ModelRegistry:
    """Two versions that passed their gate, and no alias yet."""
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    versions = ModelRegistry(request.node.name.replace("_", "-"), store / "locks")
    versions.client.create_registered_model(versions.name)
    for _ in range(2):
        versions.client.create_model_version(versions.name, source=str(store), tags={"gate": "passed"})
    return versions


def one_line_error(registry: ModelRegistry, text: str) -> str:
    with pytest.raises(RegistryError) as raised:
        registry.resolve(text)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_number_or_an_alias_names_a_version(registry: ModelRegistry) -> None:
    assert registry.resolve("1").version == "1" and registry.resolve(" 2 ").version == "2"
    registry.promote("1", reviewer="alice")
    assert registry.resolve("champion").version == "1"
    registry.promote("2", reviewer="alice")
    assert (registry.resolve("champion").version, registry.resolve("previous").version) == ("2", "1")
    registry.client.set_registered_model_alias(registry.name, "challenger", "1")
    assert registry.resolve("challenger").version == "1"


def test_an_alias_that_names_no_version_says_what_would_set_it(registry: ModelRegistry) -> None:
    assert one_line_error(registry, "champion") == (
        f"{registry.name} has no 'champion': promote a version with `cvops models promote V --reviewer NAME`"
    )
    assert one_line_error(registry, "challenger").startswith(
        f"{registry.name} has no 'challenger': train one with `cvops run training`"
    )
    assert "`cvops models promote V --reviewer NAME`" in one_line_error(registry, "previous")


def test_anything_else_names_the_versions_and_the_aliases(registry: ModelRegistry) -> None:
    assert one_line_error(registry, "banana") == (
        f"{registry.name} has no version 'banana': give a version number (versions: 2, 1) "
        "or an alias (champion, challenger, previous)"
    )
    assert "no version '7'" in one_line_error(registry, "7")
