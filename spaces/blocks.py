"""MobileNet-style blocks behind a registry, and the student network built from a candidate."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from edgeshrink.spaces.candidate import Candidate, StageSpec


def _make_divisible(value: float, divisor: int = 4) -> int:
    """Round channels the way MobileNet does, so width multipliers give friendly sizes."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, kxk depthwise, 1x1 linear projection, skip if shapes match."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid_chs = in_chs * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(Conv2dNormActivation(in_chs, mid_chs, 1, activation_layer=nn.ReLU6))
        layers.append(
            Conv2dNormActivation(
                mid_chs, mid_chs, kernel, stride, groups=mid_chs, activation_layer=nn.ReLU6
            )
        )
        layers.append(Conv2dNormActivation(mid_chs, out_chs, 1, activation_layer=None))
        self.conv = nn.Sequential(*layers)
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.has_skip else out


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: kxk depthwise then 1x1 pointwise."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int = 1):
        super().__init__()
        self.conv = nn.Sequential(
            Conv2dNormActivation(
                in_chs, in_chs, kernel, stride, groups=in_chs, activation_layer=nn.ReLU6
            ),
            Conv2dNormActivation(in_chs, out_chs, 1, activation_layer=nn.ReLU6),
        )
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.has_skip else out


BlockFactory = Callable[[int, int, int, int, int], nn.Module]

# Registry: block type token -> factory(in_chs, out_chs, kernel, stride, expansion).
BLOCKS: dict[str, BlockFactory] = {
    "ir": InvertedResidual,
    "ds": DepthwiseSeparable,
}


class Student(nn.Module):
    def __init__(self, candidate: Candidate, in_channels: int, num_classes: int):
        super().__init__()
        wm = candidate.width_mult
        stem = _make_divisible(candidate.stem_channels * wm)
        self.stem = Conv2dNormActivation(in_channels, stem, 3, 1, activation_layer=nn.ReLU6)
        layers: list[nn.Module] = []
        in_chs = stem
        for stage in candidate.stages:
            out_chs = _make_divisible(stage.channels * wm)
            layers.extend(_stage_blocks(stage, in_chs, out_chs))
            in_chs = out_chs
        self.blocks = nn.Sequential(*layers)
        head = _make_divisible(candidate.head_channels * max(1.0, wm))
        self.head = Conv2dNormActivation(in_chs, head, 1, activation_layer=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _stage_blocks(stage: StageSpec, in_chs: int, out_chs: int) -> list[nn.Module]:
    factory = BLOCKS[stage.block]
    return [
        factory(in_chs if i == 0 else out_chs, out_chs, stage.kernel,
                stage.stride if i == 0 else 1, stage.expansion)
        for i in range(stage.depth)
    ]


def build_student(candidate: Candidate, in_channels: int, num_classes: int) -> Student:
    return Student(candidate, in_channels, num_classes)
