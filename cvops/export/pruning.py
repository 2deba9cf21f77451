"""Structured pruning (`prune.*`): whole channels removed from a trained classifier, so the model is smaller and
faster on any runtime, then fine-tuned to win back what the cut cost.

Which channels go is decided by torch-pruning (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR
2023): its dependency graph groups the layers whose channels are coupled (a convolution, its batch norm, the
next convolution's inputs, a residual sum's every branch) and removes a channel from all of them at once, so the
pruned model still runs. In each group, the channels with the smallest L1 norm of their weights go, the same
share (`prune.ratio`) in every prunable layer; the classifier's head keeps its classes. Channel counts are kept
to multiples of 8, which CPU kernels run fastest.

torch-pruning was chosen over torch.nn.utils.prune, which only masks weights to zero (the model keeps its size
and speed), and over hand-written per-architecture surgery, which would break on the first timm model it did not
know; its DepGraph prunes the default EfficientNet-Lite0 and the digits demo's ResNet alike (tests, and the
compression benchmark).
"""

import copy
from typing import Any

import torch
from torch import nn

from cvops.config import Params
from cvops.data.prepare import DatasetRef
from cvops.evaluation.reports import Pruning
from cvops.training.models import resolve_device
from cvops.training.trainer import train_model, training_inputs, training_splits

ROUND_TO = 8


def prune(model: nn.Module, ref: DatasetRef, params: Params) -> tuple[nn.Module, Pruning]:
    """A copy of the trained `model` with `params.prune.ratio` of each prunable layer's channels removed, then
    fine-tuned for `prune.fine_tune_epochs` on the train split as train.* says (without a frozen backbone or a
    warm-up: the weights are trained already), the best validation epoch kept; and what was removed. The copy
    is on the CPU, in eval mode; `model` is left as it was."""
    import torch_pruning as tp  # 2.3 s to import here: only when pruning

    pruned = copy.deepcopy(model).cpu().eval()
    example = torch.zeros(1, 3, ref.image_size, ref.image_size)
    macs_before, parameters_before = tp.utils.count_ops_and_params(pruned, example)
    classifier: Any = getattr(pruned, "get_classifier", None)  # timm's, and a model of your own may have one
    head = classifier() if callable(classifier) else None
    pruner = tp.pruner.BasePruner(
        pruned,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=params.prune.ratio,
        ignored_layers=[head] if isinstance(head, nn.Module) else [],
        round_to=ROUND_TO,
    )
    pruner.step()
    macs_after, parameters_after = tp.utils.count_ops_and_params(pruned, example)
    epochs = 0
    if params.prune.fine_tune_epochs:
        train = params.train.model_copy(
            update={"epochs": params.prune.fine_tune_epochs, "freeze_backbone_epochs": 0, "warmup_epochs": 0}
        )
        inputs = training_inputs(params, ref, training_splits(ref), model=pruned)
        result = train_model(inputs, train, seed=params.base.seed, device=resolve_device(params.base.device))
        pruned, epochs = result.model.cpu().eval(), len(result.history)
    return pruned, Pruning(
        ratio=params.prune.ratio,
        parameters_before=int(parameters_before),
        parameters_after=int(parameters_after),
        macs_before=int(macs_before),
        macs_after=int(macs_after),
        fine_tune_epochs=epochs,
    )
