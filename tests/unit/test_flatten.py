"""MLflow helpers: parameters are logged under dotted names."""

from cvops.config import Params, flatten


def test_flatten_gives_dotted_keys():
    nested = {"train": {"lr": 0.1, "augment": {"hflip": 0.5}}, "base": {"seed": 1}, "top": None}
    assert flatten(nested) == {"train.lr": 0.1, "train.augment.hflip": 0.5, "base.seed": 1, "top": None}


def test_every_parameter_becomes_one_dotted_key():
    flat = flatten(Params().model_dump(mode="json"))
    assert flat["train.augment.hflip"] == Params().train.augment.hflip
    assert flat["data.path"] is None
    assert not any(isinstance(v, dict) for v in flat.values())
