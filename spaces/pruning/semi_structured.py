"""2:4 semi-structured sparsity: in every group of 4 consecutive weights along a layer's input
axis, 2 are zero, the pattern sparse tensor cores and 2:4 kernels run at half the MACs.

The input axis is ``in_features`` of a linear layer and the flattened ``in_ch * kh * kw`` axis of
a dense conv (``in_ch`` alone for a 1x1 conv), i.e. each output row of the weight as stored in
torch and in ONNX. Eligible: linear layers and dense (``groups == 1``) convs whose row length is
a multiple of 4. Depthwise and grouped convs stay dense: their rows are one channel's ``kh * kw``
taps, which no 2:4 kernel takes. The sparsity a candidate asks for is ignored: an eligible layer
is always exactly 50 % zero, and the others keep every weight.

``torch.nn.utils.prune`` has no N:M method (only unstructured and whole-slice ones), so the mask
is computed here and held with ``prune.custom_from_mask``; ``torch.sparse``'s semi-structured
tensors need CUDA and fp16/int8, and exported ONNX files carry the pattern as plain zeros anyway.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from edgeshrink.spaces.pruning.masks import masked_weight

GROUP = 4
ZEROS = 2


def eligible_for_2_4(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return module.in_features % GROUP == 0
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return module.weight[0].numel() % GROUP == 0
    return False


def n_m_mask(weight: torch.Tensor, zeros: int, group: int = GROUP,
             held: torch.Tensor | None = None) -> torch.Tensor:
    """Mask zeroing the ``zeros`` smallest |w| of every ``group`` consecutive input weights.

    Entries the ``held`` mask already zeroes rank first, so masks only grow across steps.
    """
    scores = weight.detach().abs().reshape(weight.shape[0], -1, group)
    if held is not None:
        scores = torch.where(held.reshape(scores.shape) == 0, -1.0, scores)
    mask = torch.ones_like(scores)
    mask.scatter_(-1, scores.topk(zeros, dim=-1, largest=False).indices, 0.0)
    return mask.reshape(weight.shape)


def follows_2_4(weight: torch.Tensor) -> bool:
    """At least 2 zeros in every group of 4 consecutive input weights of every output row."""
    rows = weight.reshape(weight.shape[0], -1)
    if rows.shape[1] % GROUP:
        return False
    return bool(((rows.reshape(rows.shape[0], -1, GROUP) == 0).sum(-1) >= ZEROS).all())


class SemiStructuredPruner:
    """Step ``k`` of ``steps`` zeroes ``ceil(2 * k / steps)`` weights per group of 4 (1:4, then
    2:4 for two steps), so fine-tuning meets the full pattern gradually."""

    def __init__(self, model: nn.Module, steps: int):
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        self._layers = [(n, m) for n, m in layers if eligible_for_2_4(m)]
        self._dense = [n for n, m in layers if not eligible_for_2_4(m)]
        self._total = sum(m.weight.numel() for _, m in layers)
        self._steps, self._done = steps, 0

    def step(self) -> None:
        self._done += 1
        zeros = math.ceil(ZEROS * self._done / self._steps)
        for _, m in self._layers:
            mask = n_m_mask(masked_weight(m), zeros, held=getattr(m, "weight_mask", None))
            prune.custom_from_mask(m, "weight", mask)

    def details(self) -> dict[str, Any]:
        eligible = sum(m.weight.numel() for _, m in self._layers)
        return {
            "target_sparsity": ZEROS / GROUP * eligible / self._total if self._total else 0.0,
            "semi_structured_layers": [n for n, _ in self._layers],
            "dense_layers": list(self._dense),
        }
