"""Weight masks held with ``torch.nn.utils.prune``: zeroed weights stay zero while fine-tuning.

``prune`` keeps ``weight_orig`` as the trained parameter and recomputes ``weight = weight_orig *
weight_mask`` before every forward, so an optimizer step cannot revive a pruned weight;
:func:`make_permanent` folds the mask into a plain ``weight`` before export.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


def prunable_parameters(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def masked_weight(module: nn.Module) -> torch.Tensor:
    """The weight as the next forward will see it (``module.weight`` is stale after a step)."""
    if hasattr(module, "weight_mask"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def masked_count(module: nn.Module) -> int:
    """How many weights the held mask zeroes (0 when no mask is held)."""
    mask = getattr(module, "weight_mask", None)
    return 0 if mask is None else int((mask == 0).sum())


def make_permanent(model: nn.Module) -> None:
    for module, name in prunable_parameters(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            prune.remove(module, name)


def weight_sparsity(model: nn.Module) -> float:
    total = zeros = 0
    for module, _ in prunable_parameters(model):
        w = masked_weight(module)
        total += w.numel()
        zeros += int((w == 0).sum())
    return zeros / total if total else 0.0
