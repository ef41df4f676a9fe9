"""MobileNet-style blocks behind a registry, and the student network built from a candidate.

Every block keeps its layers in one ``conv`` Sequential, so ONNX node names carry the module path
(``/blocks/blocks.3/conv/conv.0/conv.0.0/Conv``) that per-stage tools map back to a stage.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from edgeshrink.core.channel_rounding import make_divisible, se_channels
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import ACTIVATION_TOKENS, BLOCK_KINDS
from edgeshrink.spaces.candidate import (
    BlockChoice,
    Candidate,
    StageSpec,
    format_arch,
)

# Activation name -> layer, for the expand and depthwise convs (and ds's pointwise conv).
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu6": nn.ReLU6, "hswish": nn.Hardswish}
assert set(ACTIVATIONS) == set(ACTIVATION_TOKENS)


def _squeeze_excitation(chs: int) -> SqueezeExcitation:
    """MobileNetV3's SE: squeeze to a quarter (multiple of 8), hard-sigmoid gate."""
    return SqueezeExcitation(chs, se_channels(chs), scale_activation=nn.Hardsigmoid)


def _depthwise(chs: int, kernel: int, stride: int, act: str) -> Conv2dNormActivation:
    return Conv2dNormActivation(chs, chs, kernel, stride, groups=chs,
                                activation_layer=ACTIVATIONS[act])


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand (absent at expansion 1), kxk depthwise, optional SE,
    1x1 linear projection; residual if shapes match."""

    def __init__(self, in_chs: int, out_chs: int, *, kernel: int, stride: int, expansion: int,
                 se: bool = False, act: str = "relu6"):
        super().__init__()
        mid_chs = in_chs * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(Conv2dNormActivation(in_chs, mid_chs, 1,
                                               activation_layer=ACTIVATIONS[act]))
        layers.append(_depthwise(mid_chs, kernel, stride, act))
        if se:
            layers.append(_squeeze_excitation(mid_chs))
        layers.append(Conv2dNormActivation(mid_chs, out_chs, 1, activation_layer=None))
        self.conv = nn.Sequential(*layers)
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.has_skip else out


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: kxk depthwise, optional SE, 1x1 pointwise; residual if shapes match."""

    def __init__(self, in_chs: int, out_chs: int, *, kernel: int, stride: int,
                 expansion: int = 1, se: bool = False, act: str = "relu6"):
        super().__init__()
        layers: list[nn.Module] = [_depthwise(in_chs, kernel, stride, act)]
        if se:
            layers.append(_squeeze_excitation(in_chs))
        layers.append(Conv2dNormActivation(in_chs, out_chs, 1, activation_layer=ACTIVATIONS[act]))
        self.conv = nn.Sequential(*layers)
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.has_skip else out


BlockFactory = Callable[..., nn.Module]

# Registry: block type token -> factory(in_chs, out_chs, *, kernel, stride, expansion, se, act).
# Empty block types ("skip") have no factory: their stage adds no module.
BLOCKS: dict[str, BlockFactory] = {
    "ir": InvertedResidual,
    "ds": DepthwiseSeparable,
}
assert set(BLOCKS) == {k for k, kind in BLOCK_KINDS.items() if not kind.empty}


class Student(nn.Module):
    """stem -> blocks (all stages, flat) -> head -> pool -> classifier.

    ``stage_of_block[j]`` is the stage of ``blocks[j]``; ``stage_channels`` (before the width
    multiplier) and ``width_mult`` are kept so :func:`arch_of` can name skipped stages.
    """

    def __init__(self, candidate: Candidate, in_channels: int, num_classes: int):
        super().__init__()
        wm = candidate.width_mult
        stem = make_divisible(candidate.stem_channels * wm)
        self.stem = Conv2dNormActivation(in_channels, stem, 3, 1, activation_layer=nn.ReLU6)
        layers: list[nn.Module] = []
        stage_of_block: list[int] = []
        in_chs = stem
        for i, stage in enumerate(candidate.stages):
            if BLOCK_KINDS[stage.block].empty:
                continue  # stride 1 and no module: the next stage sees this one's input
            out_chs = make_divisible(stage.channels * wm)
            blocks = _stage_blocks(stage, in_chs, out_chs)
            layers.extend(blocks)
            stage_of_block.extend([i] * len(blocks))
            in_chs = out_chs
        self.blocks = nn.Sequential(*layers)
        self.stage_of_block = tuple(stage_of_block)
        self.stage_channels = tuple(s.channels for s in candidate.stages)
        self.width_mult = wm
        head = make_divisible(candidate.head_channels * max(1.0, wm))
        self.head = Conv2dNormActivation(in_chs, head, 1, activation_layer=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The output of ``blocks`` (before the head): where a feature hint is applied."""
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _stage_blocks(stage: StageSpec, in_chs: int, out_chs: int) -> list[nn.Module]:
    factory = BLOCKS[stage.block]
    return [
        factory(in_chs if i == 0 else out_chs, out_chs, kernel=stage.kernel,
                stride=stage.stride if i == 0 else 1, expansion=stage.expansion, se=stage.se,
                act=stage.act)
        for i in range(stage.depth)
    ]


def build_student(candidate: Candidate, in_channels: int, num_classes: int) -> Student:
    return Student(candidate, in_channels, num_classes)


def _read_block(block: nn.Module) -> tuple[BlockChoice, int, int]:
    """(block choice, stride, output channels) of a built block, read off its layers."""
    kind = next(name for name, f in BLOCKS.items() if isinstance(f, type) and type(block) is f)
    convs = [m for m in block.conv if isinstance(m, Conv2dNormActivation)]
    dw, first = convs[-2][0], convs[0][0]  # the depthwise conv precedes the last 1x1 conv
    act_layer = convs[-2][-1]
    act = next(name for name, cls in ACTIVATIONS.items() if type(act_layer) is cls)
    se = any(isinstance(m, SqueezeExcitation) for m in block.conv)
    expansion = dw.in_channels // first.in_channels if BLOCK_KINDS[kind].expands else 1
    choice = BlockChoice(kind, dw.kernel_size[0], expansion, se, act)
    return choice, dw.stride[0], convs[-1][0].out_channels


def arch_of(model: Student) -> str:
    """The architecture string of a built student, read from its modules (not its candidate)."""
    stages = []
    for i, nominal in enumerate(model.stage_channels):
        blocks = [b for b, s in zip(model.blocks, model.stage_of_block, strict=True) if s == i]
        if not blocks:
            stages.append(StageSpec("skip", 0, 1, 0, 1, nominal))
            continue
        choice, stride, out_chs = _read_block(blocks[0])
        later = {_read_block(b)[0] for b in blocks[1:]}
        expected = make_divisible(nominal * model.width_mult)
        if later - {choice} or out_chs != expected:
            raise EdgeshrinkError(
                f"stage {i} of the model is not one block type of {expected} channels (got "
                f"{out_chs}); was it pruned or edited after build_student?"
            )
        stages.append(choice.stage(len(blocks), stride, nominal))
    return format_arch(model.width_mult, tuple(stages))
