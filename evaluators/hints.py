"""Hint targets for feature distillation: the teacher's last spatial feature map.

Found with forward hooks, so any nn.Module teacher gives hints (the built-in one, a torchvision
architecture); TorchScript and ONNX teachers expose no layers to hook and give none.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

HINT_GRID = 4  # teacher maps are pooled to at most 4x4: small to cache, still spatial

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[int, torch.Tensor | None]] = (
    weakref.WeakKeyDictionary()
)


def _last_spatial_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The last 4-D activation larger than 1x1 that the model computes on ``x``."""
    return _forward_with_features(model, x)[1]


def _forward_with_features(model: nn.Module,
                           x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    seen: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1:
            seen.append(out)

    handles = [m.register_forward_hook(keep) for m in model.modules()
               if not isinstance(m, torch.jit.ScriptModule)]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, (seen[-1] if seen else None)


@torch.no_grad()
def teacher_on_batch(teacher_model: nn.Module, x: torch.Tensor,
                     hints: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The teacher's logits (and, with ``hints``, its pooled hint map) on one batch, on the
    batch's device: with augmentation nothing per image can be cached, since every epoch sees
    other crops. A teacher without parameters (ONNX, run by onnxruntime) runs on the CPU."""
    teacher_model.eval()
    params = next(teacher_model.parameters(), None)
    if params is not None and params.device != x.device:
        teacher_model.to(x.device)
    inputs = x if params is not None else x.cpu()
    if not hints or isinstance(teacher_model, torch.jit.ScriptModule):
        return teacher_model(inputs).float().to(x.device), None
    logits, maps = _forward_with_features(teacher_model, inputs)
    if maps is not None:
        maps = F.adaptive_avg_pool2d(maps, min(HINT_GRID, maps.shape[-1])).float().to(x.device)
    return logits.float().to(x.device), maps


@torch.no_grad()
def teacher_hints(teacher_model: nn.Module, x: torch.Tensor,
                  batch_size: int = 256) -> torch.Tensor | None:
    """Hint targets for every image of ``x`` ([N, C, g, g]), or None if the teacher has no layers.

    Computed once per teacher model and training set, then reused by every trial.
    """
    cached = _CACHE.get(teacher_model)
    if cached is not None and cached[0] == len(x):
        return cached[1]
    if isinstance(teacher_model, torch.jit.ScriptModule):
        result = None
    else:
        teacher_model.eval()
        param = next(teacher_model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        parts = []
        for i in range(0, len(x), batch_size):
            out = _last_spatial_output(teacher_model, x[i : i + batch_size].to(device))
            if out is None:
                parts = []
                break
            parts.append(F.adaptive_avg_pool2d(out, min(HINT_GRID, out.shape[-1])).float().cpu())
        result = torch.cat(parts) if parts else None
    _CACHE[teacher_model] = (len(x), result)
    return result
