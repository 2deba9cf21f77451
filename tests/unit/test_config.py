"""params.yaml <-> pydantic models, -S overrides, and finding the project root."""

import re
from pathlib import Path

import pytest

from cvops.config import Params, Project, load_params
from cvops.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"


def test_params_yaml_mirrors_the_pydantic_defaults():
    assert load_params(PARAMS) == Params()


def test_overrides_are_read_as_yaml_scalars():
    params = load_params(PARAMS, ["train.epochs=3", "train.lr=3e-4", "data.path=/x", "data.path=null"])
    assert params.train.epochs == 3 != Params().train.epochs
    assert params.train.lr == pytest.approx(3e-4) and params.train.lr != Params().train.lr
    assert params.data.path is None  # YAML null, not the string "null"


def test_override_of_a_string_value():
    assert load_params(PARAMS, ["data.path=/tmp/images"]).data.path == "/tmp/images"


@pytest.mark.parametrize("override, key", [("train.epohcs=3", "epohcs"), ("trian.lr=1", "trian")])
def test_misspelt_override_key_is_named(override, key):
    with pytest.raises(ConfigError, match=key):
        load_params(PARAMS, [override])


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=-1", "train.lr"),
        ("prepare.image_size=abc", "prepare.image_size"),
        ("distributed.engine=spark", "distributed.engine"),
        ("serve.workers=0", "'serve.workers' = 0: Value error, give a number of processes (1 or more), or auto"),
        ("serve.workers=many", "'serve.workers' = 'many': Value error, give a number"),
        ("serve.threads=0", "'serve.threads' = 0: Value error, give a number of threads (1 or more), or auto"),
        ("serve.batch_wait_ms=-1", "serve.batch_wait_ms"),
        ("serve.canary.version=previous", "serve.canary.version"),  # a canary must be the challenger
        ("serve.canary.fraction=1", "serve.canary.fraction"),
        ("distributed.address=http://head:8265", "distributed.address"),  # the dashboard, not the GCS or client
        ("distributed.cpus_per_worker=0", "distributed.cpus_per_worker"),
        ("distributed.train_workers=0", "distributed.train_workers"),
        ("distributed.gpus_per_worker=-1", "distributed.gpus_per_worker"),
        ("distributed.max_failures=-1", "distributed.max_failures"),
        ("distributed.storage=checkpoints", "distributed.storage"),  # relative: every node would read its own
    ],
)
def test_bad_override_value_is_named(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_params(PARAMS, [override])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_params(PARAMS, ["train.epochs"])


def test_misspelt_key_in_params_yaml_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text().replace("  epochs:", "  epohcs:"))
    assert "epohcs" in path.read_text()
    with pytest.raises(ConfigError, match="epohcs"):
        load_params(path)


def test_params_hash_is_stable_and_tracks_values():
    assert load_params(PARAMS).hash() == Params().hash()
    assert load_params(PARAMS, [f"train.epochs={Params().train.epochs + 1}"]).hash() != Params().hash()


def test_project_found_from_a_subdirectory(tmp_path, monkeypatch):
    monkeypatch.delenv("CVOPS_ROOT", raising=False)
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert Project.find(sub).root == tmp_path.resolve()


def test_project_honours_cvops_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CVOPS_ROOT", str(tmp_path / "elsewhere"))
    assert Project.find(REPO).root == (tmp_path / "elsewhere").resolve()


def test_project_without_params_yaml_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CVOPS_ROOT", raising=False)
    with pytest.raises(ConfigError, match=r"params\.yaml"):
        Project.find(tmp_path)


def test_set_params_writes_overrides_into_params_yaml_keeping_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text())
    project = Project(tmp_path)

    params, changed = project.set_params([f"train.epochs={Params().train.epochs}"])
    assert changed == [] and path.read_text() == PARAMS.read_text()  # no change, not a byte rewritten

    params, changed = project.set_params(["train.epochs=2", "data.path=/images"])
    assert changed == [("train.epochs", 2), ("data.path", "/images")]
    assert load_params(path) == params and params.train.epochs == 2
    assert "# backbone learning rate" in path.read_text()
    assert path.read_text().count("null") == PARAMS.read_text().count("null") - 1


def test_set_params_refuses_bad_values_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text())
    with pytest.raises(ConfigError, match=r"train\.lr"):
        Project(tmp_path).set_params(["train.epochs=2", "train.lr=-1"])
    assert path.read_text() == PARAMS.read_text()


OVERLAY = REPO / "overlays" / "digits.yaml"


def test_an_overlay_applies_its_keys_under_the_overrides():
    params = load_params(PARAMS, ["train.epochs=2"], overlay=OVERLAY)
    assert (params.data.source, params.train.model, params.prepare.image_size) == ("digits", "resnet10t", 16)
    assert params.train.epochs == 2  # -S wins over the overlay
    assert params.train.weight_decay == Params().train.weight_decay  # keys it does not name keep params.yaml's


def test_a_misspelt_key_in_an_overlay_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  epohcs: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epohcs"):
        load_params(PARAMS, overlay=tmp_path / "bad.yaml")


def test_an_overlay_is_written_for_the_block_and_params_yaml_restored_byte_for_byte(tmp_path):
    """`make demo DATASET=digits` used to leave the digits settings in params.yaml for the next run."""
    (tmp_path / "params.yaml").write_bytes(PARAMS.read_bytes())
    project = Project(tmp_path)
    with project.overlaid(OVERLAY) as params:
        assert params.train.model == "resnet10t" == project.params().train.model  # DVC reads the file: it has it
        assert "# backbone learning rate" in project.params_file.read_text()
    assert project.params_file.read_bytes() == PARAMS.read_bytes()

    with pytest.raises(KeyboardInterrupt), project.overlaid(OVERLAY):
        raise KeyboardInterrupt  # Ctrl-C mid-run (SIGTERM ends a cvops command the same way)
    assert project.params_file.read_bytes() == PARAMS.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_without_an_overlay_nothing_is_written(tmp_path):
    (tmp_path / "params.yaml").write_bytes(PARAMS.read_bytes())
    with Project(tmp_path).overlaid(None) as params:
        assert params == Params()
    assert (tmp_path / "params.yaml").read_bytes() == PARAMS.read_bytes()


def test_the_bento_name_follows_the_registered_model():
    assert Params().registry.bento_name == "cvops-classifier"
    assert load_params(PARAMS, ["registry.model_name=Solar Cells v2"]).registry.bento_name == "solar-cells-v2"


@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "ray://cvops-ray-head-svc:10001", "null"])
def test_every_kind_of_ray_address_is_accepted(address):
    params = load_params(PARAMS, ["distributed.engine=ray", f"distributed.address={address}"])
    assert params.distributed.address == (None if address == "null" else address)


def test_each_task_registers_under_its_own_model_unless_one_is_named():
    assert load_params(PARAMS).registry.model_name == "cvops-classifier"
    detection = load_params(PARAMS, ["task=detection", "data.source=digit-scenes"])
    assert detection.registry.model_name == "cvops-detector"
    named = load_params(PARAMS, ["task=detection", "data.source=coco", "registry.model_name=shelf"])
    assert named.registry.model_name == "shelf"


def test_traffic_simulation_refuses_a_detection_checkout_in_one_line_before_any_work(tmp_path):
    from cvops.monitoring.traffic import TrafficPlan, send_traffic

    params = load_params(PARAMS, ["task=detection", "data.source=digit-scenes"])
    plan = TrafficPlan(split="test", shift="blur", severity=1.0, count=10, seed=None, url=None, offline=True)
    with pytest.raises(ConfigError, match=r"simulates a classifier's clients .* `cvops run batch-inference`"):
        send_traffic(Project(tmp_path), params, plan)
    assert not any(tmp_path.iterdir())


def test_an_unknown_task_is_one_line_naming_the_registered_ones():
    with pytest.raises(
        ConfigError, match=r"'task' = 'segmentation': .*no task 'segmentation': one of classification, detection"
    ):
        load_params(PARAMS, ["task=segmentation"])


def test_a_source_of_the_other_task_is_named_with_the_fix():
    with pytest.raises(ConfigError, match=r"data\.source coco serves detection, but task is classification: set task"):
        load_params(PARAMS, ["data.source=coco"])


def test_a_student_trains_with_its_own_model_weights_and_epochs_and_only_for_a_classifier():
    params = load_params(PARAMS, ["distill.enabled=true", "distill.student=resnet10t", "distill.epochs=2"])
    student = params.student()
    assert (student.train.model, student.train.pretrained, student.train.epochs) == ("resnet10t", "none", 2)
    assert student.train.lr == params.train.lr and student.hash() != params.hash()  # its own checkpoints
    with pytest.raises(ConfigError, match=r"distill\.enabled"):
        load_params(PARAMS, ["task=detection", "data.source=digit-scenes", "distill.enabled=true"])


def test_pruning_is_refused_for_a_detector_in_one_line():
    assert load_params(PARAMS, ["prune.enabled=true"]).prune.enabled  # a classifier is pruned
    with pytest.raises(ConfigError, match=r"prune\.enabled: pruning is built for classifiers"):
        load_params(PARAMS, ["task=detection", "data.source=digit-scenes", "prune.enabled=true"])


SAVED = REPO / "tests" / "assets" / "saved-by-0.1" / "params.yaml"  # schema 1: before params.yaml had a number


def test_a_params_file_from_before_schemas_is_read_as_it_was_meant(tmp_path):
    old = load_params(SAVED)
    # the keys schemas 2 to 5 brought take the values that reproduce schema 1's results, not the new defaults
    assert old.prepare.resize == "stretch"  # (the default too, by measurement: a later default may differ)
    assert old.prepare.decoder == "full" and Params().prepare.decoder == "draft"  # JPEGs: every pixel, as before
    assert old.validation.max_aspect_ratio is None and Params().validation.max_aspect_ratio is not None
    assert old.prune.fine_tune_epochs == 2 and Params().prune.fine_tune_epochs == 4
    assert not old.audit.enabled and old.gate.max_leakage is None  # no data audit, so nothing for the gate to count
    now = {"prepare": Params().prepare, "validation": Params().validation, "prune": Params().prune}
    now |= {"audit": Params().audit, "gate": Params().gate}
    assert old.model_copy(update=now) == Params()


def test_params_upgrade_writes_the_old_meaning_and_keeps_comments(tmp_path):
    (tmp_path / "params.yaml").write_text(SAVED.read_text())
    project = Project(tmp_path)
    before = project.params()
    upgraded = [
        ("prepare.resize", "stretch"),
        ("validate.max_aspect_ratio", None),
        ("prepare.decoder", "full"),
        ("prune.fine_tune_epochs", 2),
        ("audit.enabled", False),
        ("gate.max_leakage", None),
    ]
    assert project.upgrade_params() == (1, upgraded)
    text = (tmp_path / "params.yaml").read_text()
    assert project.params() == before  # the same results
    assert text.splitlines()[4].startswith("schema: 5 ") and "  resize: stretch         # how a non-square" in text
    assert "\n  max_aspect_ratio: null  # longer side" in text and "\n\nprepare:\n" in text  # blank line kept
    assert set(SAVED.read_text().splitlines()) <= set(text.splitlines())  # every line and comment stays
    assert project.upgrade_params() == (5, []) and (tmp_path / "params.yaml").read_text() == text
    (today := tmp_path / "today").mkdir()
    (today / "params.yaml").write_text(PARAMS.read_text())
    assert Project(today).upgrade_params() == (5, [])  # today's file is current: nothing to do


@pytest.mark.parametrize(("schema", "words"), [(6, "newer than this cvops reads (5): upgrade cvops"), ("two", "whole")])
def test_a_params_file_of_an_unknown_schema_is_refused_in_one_line(tmp_path, schema, words):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text().replace("schema: 5 ", f"schema: {schema} "))
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_params(path)


def test_a_detector_never_crops_its_images():
    with pytest.raises(ConfigError, match=r"prepare\.resize crop cuts off"):
        load_params(PARAMS, ["task=detection", "data.source=digit-scenes", "prepare.resize=crop"])
    assert load_params(PARAMS, ["prepare.resize=crop"]).prepare.resize == "crop"  # a classifier may


def test_train_augment_switches_between_a_file_and_its_probabilities_keeping_the_layout(tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    project = Project(tmp_path)
    project.set_params(["train.augment=augment.yaml"])
    text = (tmp_path / "params.yaml").read_text()
    assert project.params().train.augment == "augment.yaml" and "  augment: augment.yaml\n\ndistill:" in text
    with project.overlaid(None, ["train.augment.hflip=0"]) as params:  # a key of the section: the section again
        assert params.train.augment.hflip == 0.0 and params.train.augment.vflip == 0.5  # type: ignore[union-attr]
        assert "  augment:\n    hflip: 0.0\n\ndistill:" in (tmp_path / "params.yaml").read_text()
    assert (tmp_path / "params.yaml").read_text() == text  # restored after the run
