"""timm models by name and offline pretrained weights (packaged or a local file)."""

import pytest
import torch

from cvops.errors import ConfigError, ModelError
from cvops.training.models import create_model, normalization, packaged_weights

HEAD = {"classifier.weight", "classifier.bias"}


@pytest.fixture(scope="module")
def lite0():
    return create_model("tf_efficientnet_lite0", 3, "efficientnet-lite0")


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="resnett18"):
        create_model("resnett18", 2)


def test_packaged_efficientnet_weights_load_into_every_backbone_tensor(lite0):
    packaged = torch.load(packaged_weights()["efficientnet-lite0"], map_location="cpu", weights_only=True)
    body = [(k, v) for k, v in lite0.state_dict().items() if k not in HEAD]
    backbone = list(packaged.values())[:-2]  # the packaged ImageNet head (_fc) is replaced
    for (key, tensor), source in zip(body, backbone, strict=True):
        assert torch.equal(tensor, source), key
    assert lite0.get_classifier().out_features == 3


def test_efficientnet_lite0_uses_its_own_normalisation(lite0):
    assert normalization(lite0) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_weights_of_another_architecture_are_refused():
    with pytest.raises(ModelError, match="architecture"):
        create_model("resnet18", 2, "efficientnet-lite0")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_checkpoint_loads_by_name_with_a_new_head(tmp_path, suffix):
    trained = create_model("resnet10t", 4)
    path = tmp_path / f"resnet10t{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(trained.state_dict(), str(path))
    else:
        torch.save({"state_dict": trained.state_dict()}, path)

    model = create_model("resnet10t", 2, str(path))
    expected = trained.state_dict()
    for key, tensor in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(tensor, expected[key]), key
    assert model.get_classifier().out_features == 2


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        create_model("resnet10t", 2, str(tmp_path / "missing.pt"))


def test_garbage_weights_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00\x01not a checkpoint" * 100)
    with pytest.raises(ModelError, match=r"garbage\.pt"):
        create_model("resnet10t", 2, str(path))
