"""Unstructured magnitude pruning, reached gradually: the smallest |w| are masked step by step.

Each step asks ``torch.nn.utils.prune`` for an exact count of further weights (an int amount
prunes among the weights still unmasked), so step ``k`` of ``steps`` holds exactly
``round(sparsity * k / steps)`` of the weights masked, without rounding drift across steps.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.utils import prune

from edgeshrink.spaces.pruning.masks import masked_count, masked_weight, prunable_parameters


class MagnitudePruner:
    """``per_layer=False``: one global |w| threshold over every conv/linear weight (layers with
    small weights lose more); ``per_layer=True``: the same fraction in every layer."""

    def __init__(self, model: nn.Module, sparsity: float, steps: int, *, per_layer: bool):
        self._params = prunable_parameters(model)
        self._sparsity, self._steps, self._per_layer = sparsity, steps, per_layer
        self._done = 0

    def step(self) -> None:
        self._done += 1
        fraction = self._sparsity * self._done / self._steps
        # Rank on the weights as fine-tuned so far, not on the stale ``module.weight``.
        scores = {(m, name): masked_weight(m).abs() for m, name in self._params}
        if self._per_layer:
            for m, name in self._params:
                more = round(fraction * m.weight.numel()) - masked_count(m)
                if more > 0:
                    prune.l1_unstructured(m, name, amount=more,
                                          importance_scores=scores[(m, name)])
            return
        total = sum(m.weight.numel() for m, _ in self._params)
        more = round(fraction * total) - sum(masked_count(m) for m, _ in self._params)
        if more > 0:
            prune.global_unstructured(self._params, pruning_method=prune.L1Unstructured,
                                      amount=more, importance_scores=scores)

    def details(self) -> dict[str, Any]:
        return {"target_sparsity": self._sparsity}


def global_magnitude(model: nn.Module, sparsity: float) -> None:
    """Zero the globally smallest-|w| weights; masks stay attached until ``make_permanent``."""
    if sparsity > 0:
        MagnitudePruner(model, sparsity, 1, per_layer=False).step()
