"""Quantization-aware fine-tuning that lands on the grid onnxruntime later quantizes to.

torch.ao's QAT would export its own QDQ graph; here the exported file is quantized by
onnxruntime (``quantize_with_plan``), so training only has to put the weights exactly on that
grid and let the network adapt to rounded activations:

- weights: per output channel, symmetric, scale = max|w| / qmax recomputed every step, qmax =
  127 / 64 (onnxruntime's reduced 7-bit range) / 7 for 8 / 7 / 4 bits
  (``torch.fake_quantize_per_channel_affine``, a straight-through estimator);
- activations: what onnxruntime's static QDQ quantizes, i.e. the input and output of every
  quantized conv / linear (a ReLU / ReLU6 right after it has its output quantized instead when
  activations are asymmetric, as onnxruntime folds it), with running (EMA) min / max.

Usage: ``qat = prepare_qat(model, bits_of_module)``, train ``qat``, then ``finish_qat(qat)`` is a
plain float model with the fake-quantized weights baked in, ready to export and quantize.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.quantization.plan import WEIGHT_QMAX, QuantPlan

QUANTIZABLE = (nn.Conv2d, nn.Conv1d, nn.Linear)
# Activations onnxruntime folds into the quantized output range of the layer before them.
REMOVABLE_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
# Modules that only hold others: the exporter names their children relative to the nearest
# module that is not one of these (``conv.1.0`` rather than ``0``).
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def weight_scales(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel scales; an all-zero channel gets 1 (as onnxruntime does)."""
    amax = w.detach().abs().flatten(1).amax(1)
    return torch.where(amax > 0, amax / WEIGHT_QMAX[bits], torch.ones_like(amax))


def fake_quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``w`` rounded to its per-channel b-bit grid, in [-qmax, qmax] steps."""
    qmax = WEIGHT_QMAX[bits]
    scale = weight_scales(w, bits).float()
    zero = torch.zeros(len(scale), dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -qmax, qmax)


class WeightFakeQuant(nn.Module):
    """A parametrization: the layer sees its weights on the b-bit grid, the optimizer updates
    the float weights underneath (straight-through). ``keep`` (the non-zeros of a pruned
    weight) holds pruned weights at zero: they get no gradient and bake to exact zeros."""

    def __init__(self, bits: int, keep: torch.Tensor | None = None):
        super().__init__()
        self.bits = bits
        self.register_buffer("keep", keep)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize_weight(w if self.keep is None else w * self.keep, self.bits)


class ActivationFakeQuant(nn.Module):
    """8-bit per-tensor fake quantization with the range onnxruntime's MinMax calibration would
    give (zero always inside it): uint8 asymmetric, or int8 symmetric in [-127, 127]."""

    def __init__(self, symmetric: bool = False, momentum: float = 0.1):
        super().__init__()
        self.symmetric, self.momentum = symmetric, momentum
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                if not self.seen:
                    self.low.copy_(lo)
                    self.high.copy_(hi)
                    self.seen.fill_(True)
                else:
                    self.low.lerp_(lo, self.momentum)
                    self.high.lerp_(hi, self.momentum)
        if not self.seen:
            return x
        lo, hi = min(float(self.low), 0.0), max(float(self.high), 0.0)
        if self.symmetric:
            scale, zero, qmin, qmax = max(-lo, hi) / 127, 0, -127, 127
        else:
            scale, qmin, qmax = (hi - lo) / 255, 0, 255
            zero = round(-lo / scale) if scale > 0 else 0
        if scale <= 0:
            return x
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)


def _next_sibling(model: nn.Module, name: str) -> nn.Module | None:
    """The module after ``name`` in its parent Sequential, skipping Identity (a folded BN)."""
    parent_name, _, key = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if not isinstance(parent, nn.Sequential):
        return None
    keys = list(parent._modules)
    rest = [parent._modules[k] for k in keys[keys.index(key) + 1:]]
    return next((m for m in rest if not isinstance(m, nn.Identity)), None)


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quant(args[0]), *args[1:])


def _quantize_output(module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
    return module.output_quant(out)


# Observer attribute -> (hook, registration): module-level hooks that find their observer on the
# module they are called with, so a deep copy of a prepared model quantizes with its own.
_HOOKS = {
    "input_quant": (_quantize_input, nn.Module.register_forward_pre_hook),
    "output_quant": (_quantize_output, nn.Module.register_forward_hook),
}


def _observe(module: nn.Module, attr: str, symmetric: bool, momentum: float) -> None:
    if attr not in module._modules:
        module.add_module(attr, ActivationFakeQuant(symmetric, momentum))
        hook, register = _HOOKS[attr]
        register(module, hook)


def prepare_qat(model: nn.Module, bits_of_module: Callable[[str], int | None], *,
                act_symmetric: bool = False, momentum: float = 0.1) -> nn.Module:
    """A BN-folded copy of ``model`` whose conv / linear layers named with bits by
    ``bits_of_module(module_name)`` (None = stays float) train on their quantized grid, with
    8-bit fake-quantized activations around them. ``model`` itself is left unchanged.

    Weights that are zero here (pruned; held masks are made permanent by the folding) stay zero
    through training, so sparsity and 2:4 patterns survive QAT."""
    qat = fold_batchnorm(model)
    layers = [(n, m) for n, m in qat.named_modules() if isinstance(m, QUANTIZABLE)]
    for name, layer in layers:
        bits = bits_of_module(name)
        if bits is None:
            continue
        zeros = layer.weight.detach() == 0
        keep = (~zeros).to(layer.weight.dtype) if zeros.any() else None
        parametrize.register_parametrization(layer, "weight", WeightFakeQuant(bits, keep))
        _observe(layer, "input_quant", act_symmetric, momentum)
        act = _next_sibling(qat, name)
        folds_act = isinstance(act, REMOVABLE_ACTIVATIONS)
        if act_symmetric or not folds_act:
            _observe(layer, "output_quant", act_symmetric, momentum)
        if folds_act:
            _observe(act, "output_quant", act_symmetric, momentum)
    return qat


def finish_qat(model: nn.Module) -> nn.Module:
    """Bake the fake-quantized weights in and drop the observers, in place: a plain float model
    (the same modules as the BN-folded original) in eval mode."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        for attr, (hook, _) in _HOOKS.items():
            module._modules.pop(attr, None)
            for hooks in (module._forward_pre_hooks, module._forward_hooks):
                for key in [k for k, fn in hooks.items() if fn is hook]:
                    del hooks[key]
    return model.eval()


def onnx_scope(model: nn.Module, module_name: str) -> str:
    """The node-name prefix the TorchScript exporter gives the nodes of ``module_name``.

    Each level is named relative to the nearest ancestor that is not a container:
    ``blocks.3.conv.0.0`` -> ``/blocks/blocks.3/conv/conv.0/conv.0.0/``.
    """
    scope, path, anchor, module = "/", [], 0, model
    for part in module_name.split(".") if module_name else []:
        module = module._modules[part]
        path.append(part)
        scope += ".".join(path[anchor:]) + "/"
        if not isinstance(module, _CONTAINERS):
            anchor = len(path)
    return scope


def qat_bits(model: nn.Module, plan: QuantPlan) -> Callable[[str], int | None]:
    """``bits_of_module`` for :func:`prepare_qat`: the weight bits of each module's precision in
    ``plan`` (None for fp32 / fp16), found by the ONNX scope its nodes will carry."""
    return lambda name: plan.weight_bits(plan.precision_of(onnx_scope(model, name)))
