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

    Pairs held as plain attributes (``self.conv1``, ``self.bn1``) are left alone: their order of
    use is not visible without tracing, and the students here keep them in Sequentials.
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
    return folded
