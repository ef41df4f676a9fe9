"""Fold BatchNorm into the convolution (or linear layer) before it, as a deployment would.

Quantizing folded weights is what the device runs; QAT on folded weights trains that grid.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn
from torch.nn.utils import prune
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

# Registry: (layer, norm) pair -> torch's eval-mode fuser.
FUSERS: dict[tuple[type[nn.Module], type[nn.Module]], Callable[[nn.Module, nn.Module],
                                                                nn.Module]] = {
    (nn.Conv2d, nn.BatchNorm2d): fuse_conv_bn_eval,
    (nn.Conv1d, nn.BatchNorm1d): fuse_conv_bn_eval,
    (nn.Linear, nn.BatchNorm1d): fuse_linear_bn_eval,
}


def _masked(module: nn.Module) -> list[str]:
    """Tensors of ``module`` whose pruning mask ``torch.nn.utils.prune`` holds."""
    return [k[: -len("_mask")] for k in module._buffers if k.endswith("_mask")]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy where each layer directly followed by its BatchNorm inside a
    Sequential (``Conv2dNormActivation``'s conv, norm, act) absorbs it; the norm becomes Identity.

    Pairs held as plain attributes (``self.conv1``, ``self.bn1``: ResNet and most user models)
    are found by tracing the forward with ``torch.fx``: a norm whose only input is a layer whose
    only user it is. A model fx cannot trace keeps those pairs unfolded (the exported graph still
    runs; onnxruntime fuses them at load time).
    Pruning masks held by ``torch.nn.utils.prune`` are made permanent in the copy first (their
    hook would otherwise overwrite the fused weight on the next forward); zeros stay zero.
    """
    for module in model.modules():
        for name in _masked(module):
            # The hook's last product may still be part of an autograd graph, which deepcopy
            # refuses; the hook recomputes it before the next forward, so a detached copy is
            # the same value.
            setattr(module, name, getattr(module, f"{name}_orig").detach()
                    * getattr(module, f"{name}_mask"))
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for name in _masked(module):
            prune.remove(module, name)
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:], strict=False):
            layer, norm = seq._modules[first], seq._modules[second]
            fuser = FUSERS.get((type(layer), type(norm)))
            if fuser is not None and getattr(norm, "track_running_stats", False):
                seq._modules[first] = fuser(layer, norm)
                seq._modules[second] = nn.Identity()
    for layer_name, norm_name in _traced_pairs(folded):
        modules = dict(folded.named_modules())
        layer, norm = modules[layer_name], modules[norm_name]
        fuser = FUSERS.get((type(layer), type(norm)))
        if fuser is not None and getattr(norm, "track_running_stats", False):
            _set(folded, layer_name, fuser(layer, norm))
            _set(folded, norm_name, nn.Identity())
    return folded


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _traced_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, norm) module names where the norm is applied to the layer's output alone."""
    from torch import fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any untraceable Python in forward: fold nothing more
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
                and not isinstance(modules.get(src.target), nn.Identity)):
            pairs.append((str(src.target), str(node.target)))
    return pairs
