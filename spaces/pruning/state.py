"""Load the weights of a channel-pruned student into a freshly built one.

Channel pruning narrows layers in place, so its state dict no longer fits ``build_student``.
The state dict's tensor shapes say everything needed: each conv, BatchNorm and linear layer is
resized to its stored shape, then the weights load as usual. This keeps ``weights.pt`` a plain
tensor mapping that ``torch.load(weights_only=True)`` reads (torch_pruning's own
``tp.state_dict`` pickles whole module dicts, which a safe loader refuses).
"""

from __future__ import annotations

import torch
from torch import nn


def _resize_conv(conv: nn.Conv2d, weight: torch.Tensor) -> None:
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels
    conv.out_channels = weight.shape[0]
    conv.groups = weight.shape[0] if depthwise else conv.groups
    conv.in_channels = weight.shape[1] * conv.groups
    conv.weight = nn.Parameter(torch.empty_like(weight))
    if conv.bias is not None:
        conv.bias = nn.Parameter(torch.empty(weight.shape[0]))


def _resize_norm(norm: nn.BatchNorm2d, weight: torch.Tensor) -> None:
    n = weight.shape[0]
    norm.num_features = n
    norm.weight = nn.Parameter(torch.empty(n))
    norm.bias = nn.Parameter(torch.empty(n))
    norm.running_mean = torch.zeros(n)
    norm.running_var = torch.ones(n)


def _resize_linear(linear: nn.Linear, weight: torch.Tensor) -> None:
    linear.out_features, linear.in_features = weight.shape
    linear.weight = nn.Parameter(torch.empty_like(weight))
    if linear.bias is not None:
        linear.bias = nn.Parameter(torch.empty(weight.shape[0]))


_RESIZERS = {nn.Conv2d: _resize_conv, nn.BatchNorm2d: _resize_norm, nn.Linear: _resize_linear}


def load_pruned_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Resize ``model``'s layers to the shapes in ``state``, then load it strictly."""
    for name, module in model.named_modules():
        resize = _RESIZERS.get(type(module))
        key = f"{name}.weight" if name else "weight"
        if resize is not None and key in state and state[key].shape != module.weight.shape:
            resize(module, state[key])
    model.load_state_dict(state)
    return model
