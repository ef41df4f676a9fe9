"""Pruning methods behind a registry, realised with ``torch.nn.utils.prune``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.nn.utils import prune


def prunable_parameters(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def global_magnitude(model: nn.Module, sparsity: float) -> None:
    """Zero the globally smallest-|w| weights; masks stay attached until :func:`make_permanent`."""
    if sparsity <= 0:
        return
    prune.global_unstructured(
        prunable_parameters(model), pruning_method=prune.L1Unstructured, amount=float(sparsity)
    )


def make_permanent(model: nn.Module) -> None:
    for module, name in prunable_parameters(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            prune.remove(module, name)


def weight_sparsity(model: nn.Module) -> float:
    total = zeros = 0
    for module, name in prunable_parameters(model):
        w = getattr(module, name)
        total += w.numel()
        zeros += int((w == 0).sum())
    return zeros / total if total else 0.0


PRUNING_METHODS: dict[str, Callable[[nn.Module, float], None]] = {
    "global_magnitude": global_magnitude,
}
