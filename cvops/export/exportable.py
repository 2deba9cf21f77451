"""What a model's exported file computes: the model wrapped to return its outputs in the order the file names them
(ONNX, and the Core ML target's trace)."""

from typing import Any

import torch
from torch import nn

from cvops.export.onnx_model import BOX_OUTPUTS, EMBEDDING, OUTPUT


class _WithEmbedding(nn.Module):
    """A timm classifier that also returns its penultimate layer (the pooled features before the classifier)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model: Any = self.model  # timm's methods, which nn.Module does not declare
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        return model.get_classifier()(features), features


class _WithHeadInput(nn.Module):
    """A classifier of the user's own with a `get_classifier()` head that also returns what its head takes (the
    embedding), caught by a hook on the head for the call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []
        head: nn.Module = self.model.get_classifier()  # type: ignore[operator]
        handle = head.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0]))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        return logits, seen[-1].flatten(1)


class _Exported(nn.Module):
    """A model whose `exported` method says what its ONNX file computes (a detector's: raw outputs, embedding)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model: Any = self.model  # `exported`, which nn.Module does not declare
        return model.exported(x)


def exportable(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """`model` on the CPU in eval mode, wrapped to return what its exported file computes, and those outputs'
    names (`export_onnx` says which)."""
    model = model.cpu().eval()
    if hasattr(model, "exported"):
        return _Exported(model).eval(), [*BOX_OUTPUTS, EMBEDDING]
    if hasattr(model, "forward_head") and hasattr(model, "get_classifier"):
        return _WithEmbedding(model).eval(), [OUTPUT, EMBEDDING]
    if hasattr(model, "get_classifier"):
        return _WithHeadInput(model).eval(), [OUTPUT, EMBEDDING]
    return model, [OUTPUT]
