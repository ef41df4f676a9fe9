"""The networks behind published device latencies, as ONNX files edgeshrink would export.

A figure in ``hardware_profiles/published/*.toml`` names its network (a torchvision builder, or
one of the few built here that torchvision lacks) and its input size; :func:`onnx_file` exports
it with random weights (latency does not depend on them) the way edgeshrink exports a trial
(``evaluators.onnx_export``), converts it to the figure's precision with edgeshrink's own
quantizers (int8: onnxruntime's static QDQ tool; fp16: fp16 weights and rounded activations)
and caches the file, so a rerun only reads the graphs.

Built here, as tensorflow's builders define them (parameter counts match the published ones):
MobileNetV1 (not in torchvision); EfficientNet-Lite0-4 (EfficientNet-B0's blocks without
squeeze-and-excite, ReLU6, stem and head fixed while scaling: tensorflow/tpu
``efficientnet_lite_builder``); EfficientNet-EdgeTPU-S/M/L (``efficientnet_edgetpu_builder``:
early stages fuse expansion and depthwise into one 3x3 convolution, ReLU); MobileNetV3's
"minimalistic" variants (torchvision's MobileNetV3 with 3x3 kernels, no squeeze-and-excite and
ReLU throughout, as the tensorflow/models slim MobileNet README describes them).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
from torchvision.ops.misc import Conv2dNormActivation

from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.spaces.quantization.onnx_qdq import quantize

CACHE = Path(__file__).parent / ".cache" / "published_networks"
CALIBRATION_SAMPLES = 2  # int8 scales: any input will do, latency does not depend on them


def _cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
         act: type[nn.Module] = nn.ReLU) -> nn.Module:
    return Conv2dNormActivation(cin, cout, k, stride, groups=groups, activation_layer=act)


def mobilenet_v1(width: float = 1.0) -> nn.Module:
    """Howard et al. 2017, Table 1: a 3x3 stem, 13 depthwise-separable blocks, pool, FC."""
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
            (1024, 2), (1024, 1)]
    ch = int(32 * width)
    layers: list[nn.Module] = [_cbr(3, ch, 3, 2)]
    for out, stride in plan:
        out = int(out * width)
        layers += [_cbr(ch, ch, 3, stride, groups=ch), _cbr(ch, out, 1)]
        ch = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, 1000))


class _LiteBlock(nn.Module):
    """MBConv without squeeze-and-excite: 1x1 expand (unless ratio 1), kxk depthwise, 1x1
    project; ``mid`` and ``act`` where a family differs from EfficientNet-Lite's."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int,
                 mid: int | None = None, act: type[nn.Module] = nn.ReLU6,
                 skip: bool = True) -> None:
        super().__init__()
        mid = mid or cin * expand
        layers = [_cbr(cin, mid, 1, act=act)] if expand != 1 else []
        layers += [_cbr(mid, mid, k, stride, groups=mid, act=act),
                   Conv2dNormActivation(mid, cout, 1, activation_layer=None)]
        self.body = nn.Sequential(*layers)
        self.residual = skip and stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """tensorflow/tpu efficientnet_model.round_filters: scale, round to the divisor, never
    more than 10% down."""
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * filters else rounded)


LITE_COEFFICIENTS = {  # (width, depth) per efficientnet_lite_builder.efficientnet_lite_params
    0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8)}
# EfficientNet-B0's stages: repeats, kernel, stride, expansion, output channels.
B0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
             (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def efficientnet_lite(index: int) -> nn.Module:
    width, depth = LITE_COEFFICIENTS[index]
    layers: list[nn.Module] = [_cbr(3, 32, 3, 2, act=nn.ReLU6)]  # stem fixed at 32
    ch = 32
    for i, (repeats, k, stride, expand, out) in enumerate(B0_STAGES):
        fixed = i in (0, len(B0_STAGES) - 1)  # first and last stage keep their repeats
        out = _round_filters(out, width)
        for r in range(repeats if fixed else math.ceil(depth * repeats)):
            layers.append(_LiteBlock(ch, out, k, stride if r == 0 else 1, expand))
            ch = out
    layers += [_cbr(ch, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(1280, 1000)]  # head fixed at 1280
    return nn.Sequential(*layers)


class _FusedBlock(nn.Module):
    """EfficientNet-EdgeTPU's MBConv without depthwise (tensorflow/tpu efficientnet_model's
    MBConvBlockWithoutDepthwise): 3x3 expand at stride 1, then a 1x1 projection at the stride."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, skip: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(_cbr(cin, mid, 3),
                                  Conv2dNormActivation(mid, cout, 1, stride, activation_layer=None))
        self.residual = skip and stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


EDGETPU_COEFFICIENTS = {"s": (1.0, 1.0), "m": (1.0, 1.1), "l": (1.2, 1.4)}  # (width, depth)
# efficientnet_edgetpu_builder's blocks: repeats, kernel, stride, expansion, in, out, fused
# (c1: no depthwise), skip (stage 0 is "noskip").
EDGETPU_STAGES = [(1, 3, 1, 4, 24, 24, True, False), (2, 3, 2, 8, 24, 32, True, True),
                  (4, 3, 2, 8, 32, 48, True, True), (5, 5, 2, 8, 48, 96, False, True),
                  (4, 5, 1, 8, 96, 144, False, True), (2, 5, 2, 8, 144, 192, False, True)]


def efficientnet_edgetpu(size: str) -> nn.Module:
    """EfficientNet-EdgeTPU-S/M/L (ReLU, no squeeze-and-excite, 1001 classes). A block expands
    its nominal input width (the first block's 24, though the stem gives 32)."""
    width, depth = EDGETPU_COEFFICIENTS[size]
    ch = _round_filters(32, width)
    layers: list[nn.Module] = [_cbr(3, ch, 3, 2)]
    for repeats, k, stride, expand, cin, out, fused, skip in EDGETPU_STAGES:
        nominal, out = _round_filters(cin, width), _round_filters(out, width)
        for r in range(math.ceil(depth * repeats)):
            s, mid = (stride if r == 0 else 1), nominal * expand
            layers.append(_FusedBlock(ch, mid, out, s, skip) if fused
                          else _LiteBlock(ch, out, k, s, expand, mid=mid, act=nn.ReLU,
                                       skip=skip))
            ch = nominal = out
    head = _round_filters(1280, width)
    layers += [_cbr(ch, head, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(head, 1001)]
    return nn.Sequential(*layers)


def mobilenet_v3_minimalistic(arch: str) -> nn.Module:
    """MobileNetV3 with the per-layer sizes of ``arch`` but 3x3 kernels, no squeeze-and-excite
    and ReLU instead of hard-swish, head included."""
    setting, last = _mobilenet_v3_conf(arch)
    for cnf in setting:
        cnf.kernel, cnf.use_se, cnf.use_hs = 3, False, False
    model = MobileNetV3(setting, last)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Hardswish):
                setattr(parent, name, nn.ReLU(inplace=True))
    return model


def _torchvision(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None, **kwargs)


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v3_large_0.75": _torchvision("mobilenet_v3_large", width_mult=0.75),
    "mobilenet_v3_small_0.75": _torchvision("mobilenet_v3_small", width_mult=0.75),
    "mobilenet_v3_large_minimalistic": lambda: mobilenet_v3_minimalistic("mobilenet_v3_large"),
    "mobilenet_v3_small_minimalistic": lambda: mobilenet_v3_minimalistic("mobilenet_v3_small"),
    "googlenet": _torchvision("googlenet", aux_logits=False, init_weights=False),
    "inception_v3": _torchvision("inception_v3", aux_logits=False, init_weights=False),
    **{f"efficientnet_lite{i}": (lambda i=i: efficientnet_lite(i)) for i in LITE_COEFFICIENTS},
    **{f"efficientnet_edgetpu_{s}": (lambda s=s: efficientnet_edgetpu(s))
       for s in EDGETPU_COEFFICIENTS},
}


def build(network: str) -> nn.Module:
    """A network by the name a figure gives: built here, else torchvision's builder."""
    if network in BUILDERS:
        return BUILDERS[network]()
    if not hasattr(torchvision.models, network):
        raise ValueError(f"unknown network {network!r}: neither built here nor in torchvision")
    return _torchvision(network)()


def onnx_file(network: str, resolution: int, precision: str, cache: Path = CACHE) -> Path:
    """``network`` at ``resolution`` as an ONNX file at ``precision``, exported once and cached."""
    path = cache / f"{network}-{resolution}-{precision}.onnx"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    fp32 = cache / f"{network}-{resolution}-fp32.onnx"
    if not fp32.is_file():
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # written whole, then moved
            out = Path(tmp) / fp32.name
            export_onnx(build(network).eval(), out, 3, resolution)
            out.replace(fp32)
    if precision != "fp32":
        calibration = np.random.default_rng(0).normal(
            size=(CALIBRATION_SAMPLES, 3, resolution, resolution)).astype(np.float32)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            out = Path(tmp) / path.name
            quantize(precision, fp32, out, calibration)
            out.replace(path)
    return path
