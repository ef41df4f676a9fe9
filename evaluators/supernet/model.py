"""The supernet itself: every block of the space at its largest, and the slices a student takes.

Per stage its greatest depth and, at each block position, one block per block type (``ir`` and
``ds`` differ in structure) at the type's largest kernel and expansion, with squeeze-excitation
where any choice has it, all at the largest width multiplier. A sub-network takes the first
channels (width, expansion), the centre of each kernel (a plain centre crop: OFA's optional
kernel transformation matrices are not used) and the first ``depth`` blocks of a stage.
Activations have no weights: relu6 and hard-swish choices share them.

A sub-network runs as a plain :class:`Student` whose tensors are slices of the supernet's
(``functional_call``), so the network trained and the network a trial inherits are the same code.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from edgeshrink.core.channel_rounding import make_divisible
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.supernet.inherit import inherit_weights
from edgeshrink.spaces.blocks import BLOCKS, Student, build_student
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.enumerate import StageOptions, stage_options
from edgeshrink.spaces.space import SearchSpace


@dataclass(frozen=True)
class SupernetSettings:
    """Budget of the supernet and of a trial that inherits from it (measured: BENCHMARKS.md)."""

    epochs: int = 10
    random_subnets: int = 2  # sandwich rule: largest + smallest + this many random per step
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 4e-5
    # A trial's distillation epochs when it inherits (from scratch: 5): 1 ranked candidates as
    # faithfully as retraining them with another seed; 0 (OFA's own evaluation) ranked worse.
    finetune_epochs: int = 1
    bn_batches: int = 8  # training batches that recalibrate BatchNorm after extraction


def _layer_roles(block: nn.Module) -> list[str]:
    """Role of each layer of a block's ``conv``: expand, depthwise, se or pointwise."""
    roles, after_dw = [], False
    for layer in block.conv:
        if isinstance(layer, SqueezeExcitation):
            roles.append("se")
        elif isinstance(layer, Conv2dNormActivation) and layer[0].groups > 1:
            roles.append("depthwise")
            after_dw = True
        else:
            roles.append("pointwise" if after_dw else "expand")
    return roles


def _kind_of(block: nn.Module) -> str:
    return next(k for k, factory in BLOCKS.items() if type(block) is factory)


def _slice(t: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    """First channels on every axis, the centre on a conv's two kernel axes; a view (autograd
    flows back to the supernet's tensor)."""
    if t.ndim != len(shape):
        raise EdgeshrinkError(f"student tensor {name!r} has shape {list(shape)}, the supernet's "
                              f"{list(t.shape)}: built from another space?")
    for axis, (have, want) in enumerate(zip(t.shape, shape, strict=True)):
        if want > have:
            raise EdgeshrinkError(
                f"student tensor {name!r} needs {want} along axis {axis} but the supernet has "
                f"{have}: the candidate is outside the supernet's space"
            )
        if want < have:
            centre = t.ndim == 4 and axis >= 2
            t = t.narrow(axis, (have - want) // 2 if centre else 0, want)
    return t


class SuperNet(nn.Module):
    """stem -> stages[i][position][block type] -> head -> classifier, all at their largest.

    ``forward(x, candidate)`` runs the candidate's sub-network on the shared weights.
    """

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int):
        super().__init__()
        self.space = space
        self.in_channels, self.num_classes = in_channels, num_classes
        self.options = stage_options(space)
        self.settings = SupernetSettings()
        self.train_seconds = 0.0  # set by train_supernet
        self.trained_now = False
        wmax = space.distributions["width_mult"].high
        stem = make_divisible(space.stem_channels * wmax)
        self.stem = Conv2dNormActivation(in_channels, stem, 3, 1, activation_layer=nn.ReLU6)
        arriving = {stem}  # channel counts that may reach the next stage (skips let more in)
        self.stages = nn.ModuleList()
        for opts in self.options:
            out_chs = make_divisible(opts.channels * wmax)
            positions = nn.ModuleList()
            for pos in range(opts.max_depth if opts.kinds else 0):
                in_chs = max(arriving) if pos == 0 else out_chs
                positions.append(nn.ModuleDict({
                    kind: self._block(kind, opts, in_chs, out_chs, opts.stride if pos == 0 else 1)
                    for kind in opts.kinds
                }))
            self.stages.append(positions)
            made = {out_chs} if opts.kinds else set()
            arriving = arriving | made if opts.can_skip else made
        head = make_divisible(space.head_channels * max(1.0, wmax))
        self.head = Conv2dNormActivation(max(arriving), head, 1, activation_layer=nn.ReLU6)
        self.classifier = nn.Linear(head, num_classes)

    @staticmethod
    def _block(kind: str, opts: StageOptions, in_chs: int, out_chs: int, stride: int) -> nn.Module:
        kernel, expansion, se = opts.largest(kind)
        return BLOCKS[kind](in_chs, out_chs, kernel=kernel, stride=stride, expansion=expansion,
                            se=se)

    def _counterparts(self, student: Student) -> dict[str, str]:
        """Student layer prefix (``blocks.3.conv.1``) -> supernet prefix
        (``stages.1.0.ir.conv.2``), matched by stage, position in the stage, type and role."""
        out: dict[str, str] = {}
        first = {}
        for j, (block, stage) in enumerate(zip(student.blocks, student.stage_of_block,
                                               strict=True)):
            pos = j - first.setdefault(stage, j)
            kind = _kind_of(block)
            try:
                mine = self.stages[stage][pos][kind]
            except (IndexError, KeyError):
                raise EdgeshrinkError(
                    f"student block {j} ({kind}, stage {stage}, position {pos}) has no "
                    "counterpart in the supernet: the candidate is outside its space"
                ) from None
            theirs = _layer_roles(mine)
            for layer, role in enumerate(_layer_roles(block)):
                if role not in theirs:
                    raise EdgeshrinkError(f"student block {j} has a {role} layer; the supernet's "
                                          f"{kind} block at stage {stage} has none")
                out[f"blocks.{j}.conv.{layer}"] = (
                    f"stages.{stage}.{pos}.{kind}.conv.{theirs.index(role)}")
        return out

    def sub_state(self, student: Student) -> dict[str, torch.Tensor]:
        """The student's parameters and buffers as slices (views) of the supernet's."""
        mine = dict(itertools.chain(self.named_parameters(), self.named_buffers()))
        prefixes = self._counterparts(student)
        out = {}
        for name, tensor in itertools.chain(student.named_parameters(), student.named_buffers()):
            prefix = ".".join(name.split(".")[:4])
            source = prefixes[prefix] + name[len(prefix):] if prefix in prefixes else name
            out[name] = _slice(mine[source], tensor.shape, name)
        return out

    def forward(self, x: torch.Tensor, candidate: Candidate) -> torch.Tensor:
        with torch.device("meta"):  # only the structure; every tensor comes from the supernet
            template = build_student(candidate, self.in_channels, self.num_classes)
        template.train(self.training)
        return functional_call(template, self.sub_state(template), (x,))

    def extract(self, candidate: Candidate) -> Student:
        """A plain student of the candidate carrying its slice of the weights (BN not yet
        recalibrated)."""
        student = build_student(candidate, self.in_channels, self.num_classes)
        inherit_weights(student, self)
        return student
