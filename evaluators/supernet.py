"""Weight sharing, Once-for-All style: one supernet trained once, whose slices trials inherit.

The supernet is the largest network of a search space: per stage its greatest depth and, at each
block position, one block per block type (``ir`` and ``ds`` differ in structure) at the type's
largest kernel and expansion, with squeeze-excitation where any choice has it, all at the
largest width multiplier. A sub-network takes the first channels (width, expansion), the centre
of each kernel (a plain centre crop: OFA's optional kernel transformation matrices are not used)
and the first ``depth`` blocks of a stage. Activations have no weights: relu6 and hard-swish
choices share them.

Training follows the sandwich rule (largest + smallest + a few random sub-networks per step,
gradients summed), distilled from the teacher's cached logits as a trial is. A sub-network runs as
a plain :class:`Student` whose tensors are slices of the supernet's (``functional_call``), so the
network trained and the network a trial inherits are the same code. An extracted student gets
fresh BatchNorm statistics from a few training batches (shared statistics fit no sub-network).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.optim.swa_utils import update_bn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from edgeshrink.core.atomic import atomic_path, compute_once
from edgeshrink.core.channel_rounding import make_divisible
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import BLOCK_KINDS
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.training import TrainingDiverged
from edgeshrink.spaces.blocks import BLOCKS, Student, build_student
from edgeshrink.spaces.candidate import Candidate, StageSpec
from edgeshrink.spaces.distillation import distillation_loss
from edgeshrink.spaces.space import (
    Categorical,
    Distribution,
    FloatRange,
    IntRange,
    SearchSpace,
    stage_param,
)

CACHE_FORMAT = 2  # bump when the supernet's layout or training changes
_TRIAL_ONLY = ("finetune_epochs", "bn_batches")  # settings that leave the supernet unchanged


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


# ---------------------------------------------------------------- what the space offers


@dataclass(frozen=True)
class StageOptions:
    """Every block configuration one stage of the space can take."""

    channels: int
    stride: int
    options: tuple[StageSpec, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        """Block types with weights, in registry order."""
        present = {s.block for s in self.options}
        return tuple(k for k in BLOCKS if k in present)

    @property
    def can_skip(self) -> bool:
        return any(BLOCK_KINDS[s.block].empty for s in self.options)

    @property
    def max_depth(self) -> int:
        return max(s.depth for s in self.options)

    def largest(self, kind: str) -> tuple[int, int, bool]:
        """(kernel, expansion, se) of the supernet's block of this type."""
        mine = [s for s in self.options if s.block == kind]
        return (max(s.kernel for s in mine), max(s.expansion for s in mine),
                any(s.se for s in mine))


def _values(dist: Distribution) -> list[Any]:
    """The values a distribution can take (floats: their two ends; enough for the block part)."""
    if isinstance(dist, Categorical):
        return list(dist.choices)
    if isinstance(dist, IntRange):
        return list(range(dist.low, dist.high + 1, dist.step))
    return [dist.low, dist.high]


def stage_options(space: SearchSpace) -> tuple[StageOptions, ...]:
    """Enumerate each stage's parameters through the space itself, so both block forms (tokens
    and factors) and every default are read exactly as a trial reads them."""
    base = {name: _values(d)[0] for name, d in space.distributions.items()}
    out = []
    for i, (channels, stride) in enumerate(space.stage_skeleton):
        names = [n for n in space.distributions
                 if n.startswith(f"stage{i}_") and n != stage_param(i, "precision")]
        specs = {space.candidate_from_params({**base, **dict(zip(names, combo, strict=True))})
                 .stages[i]
                 for combo in itertools.product(*(_values(space.distributions[n])
                                                   for n in names))}
        out.append(StageOptions(channels, stride, tuple(sorted(specs, key=StageSpec.token))))
    return tuple(out)


def stage_cost(stage: StageSpec) -> int:
    """Weights of a stage at its nominal channels: what 'largest' and 'smallest' compare."""
    if BLOCK_KINDS[stage.block].empty:
        return 0
    c, k = stage.channels, stage.kernel
    mid = c * stage.expansion
    per_block = (c * mid if stage.expansion > 1 else 0) + k * k * mid + mid * c
    per_block += mid * mid // 2 if stage.se else 0
    return per_block * stage.depth


def _draw(dist: Distribution, rng: random.Random) -> Any:
    if isinstance(dist, Categorical):
        return rng.choice(dist.choices)
    if isinstance(dist, IntRange):
        return rng.randrange(dist.low, dist.high + 1, dist.step)
    if dist.step:
        return dist.low + dist.step * rng.randint(0, round((dist.high - dist.low) / dist.step))
    return rng.uniform(dist.low, dist.high)


def sample_subnet(space: SearchSpace, options: tuple[StageOptions, ...], rng: random.Random,
                  mode: str = "random") -> Candidate:
    """A candidate of the space: drawn at random, or its ``"largest"`` / ``"smallest"`` network
    (every stage at its most / least weights, width at the top / bottom of its range)."""
    params = {name: _draw(d, rng) for name, d in space.distributions.items()}
    candidate = space.candidate_from_params(params)
    if mode == "random":
        return candidate
    width = space.distributions["width_mult"]
    pick, w = {"largest": (max, width.high), "smallest": (min, width.low)}[mode]
    return replace(candidate, width_mult=w,
                   stages=tuple(pick(o.options, key=stage_cost) for o in options))


def _midpoint(space: SearchSpace, name: str) -> float:
    d = space.distributions[name]
    return (d.low + d.high) / 2 if isinstance(d, FloatRange) else float(_values(d)[0])


# ---------------------------------------------------------------- the supernet


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


def inherit_weights(student: nn.Module, supernet: SuperNet) -> None:
    """Copy the supernet's slices into a freshly built ``build_student(candidate, ...)``."""
    if not isinstance(student, Student):
        raise EdgeshrinkError(f"inherit_weights needs a Student from build_student; got "
                              f"{type(student).__name__}")
    with torch.no_grad():
        state = {k: v.detach().clone() for k, v in supernet.sub_state(student).items()}
    student.load_state_dict(state)


def recalibrate_bn(model: nn.Module, x: torch.Tensor, batches: int, batch_size: int,
                   seed: int = 0) -> None:
    """Fresh BatchNorm statistics from a few training batches (torch's SWA ``update_bn``:
    running averages reset, then a cumulative mean over the batches); the model ends in eval."""
    if batches <= 0:
        return
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    loader = [x[order[i : i + batch_size]]
              for i in range(0, min(len(x), batches * batch_size), batch_size)]
    update_bn(loader, model)
    model.eval()


def prepare_inherited(student: Student, supernet: SuperNet, x: torch.Tensor, seed: int = 0) -> None:
    """What weight-sharing mode does to a trial's fresh student before its short fine-tune."""
    inherit_weights(student, supernet)
    settings = supernet.settings
    recalibrate_bn(student, x, settings.bn_batches, settings.batch_size, seed)


# ---------------------------------------------------------------- training, cached on disk


def _sandwich(supernet: SuperNet, rng: random.Random, random_subnets: int) -> Iterator[Candidate]:
    space, options = supernet.space, supernet.options
    yield sample_subnet(space, options, rng, "largest")
    yield sample_subnet(space, options, rng, "smallest")
    for _ in range(random_subnets):
        yield sample_subnet(space, options, rng)


def fit_supernet(supernet: SuperNet, data: DataSplits, teacher_logits: torch.Tensor,
                 settings: SupernetSettings, seed: int = 0) -> float:
    """Sandwich-rule distillation in place (AdamW, cosine schedule); returns the last epoch's
    mean loss of the largest network."""
    x, y = data.train.x, data.train.y
    space = supernet.space
    temperature, alpha = _midpoint(space, "temperature"), _midpoint(space, "alpha")
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(supernet.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)
    steps = settings.epochs * math.ceil(len(x) / settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    supernet.train()
    largest_loss = float("nan")
    for _ in range(settings.epochs):
        total = 0.0
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            opt.zero_grad(set_to_none=True)
            for k, candidate in enumerate(_sandwich(supernet, rng, settings.random_subnets)):
                loss = distillation_loss(supernet(x[idx], candidate), teacher_logits[idx],
                                         y[idx], temperature, alpha)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"supernet training diverged: loss {loss.item()}")
                loss.backward()
                total += loss.item() * len(idx) if k == 0 else 0.0
            opt.step()
            sched.step()
        largest_loss = total / len(x)
    supernet.eval()
    return largest_loss


def _cache_key(space: SearchSpace, data: DataSplits, teacher: Teacher,
               settings: SupernetSettings, seed: int) -> str:
    blob = json.dumps({
        "format": CACHE_FORMAT,
        "space": json.loads(json.dumps(asdict(space), default=list)),
        "data": data.fingerprint(),
        "teacher": hashlib.sha256(teacher.train_logits.numpy().tobytes()).hexdigest()[:16],
        "settings": {k: v for k, v in asdict(settings).items() if k not in _TRIAL_ONLY},
        "seed": seed,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_supernet(space: SearchSpace, data: DataSplits, teacher: Teacher,
                   settings: SupernetSettings, cache_dir: Path, seed: int = 0) -> SuperNet:
    """The space's supernet, trained once and cached in ``cache_dir`` (keyed by space, data,
    teacher, settings and seed); a file lock makes concurrent first starts train it once."""
    torch.manual_seed(seed)  # the initial weights too: the cached file is keyed by the seed
    supernet = SuperNet(space, data.in_channels, data.num_classes)
    supernet.settings = settings
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"supernet-{_cache_key(space, data, teacher, settings, seed)}.pt"

    def load() -> SuperNet | None:
        if not path.is_file():
            return None
        stored = torch.load(path, weights_only=True)
        supernet.load_state_dict(stored["state"])
        supernet.train_seconds = stored["seconds"]
        return supernet.eval()

    def train() -> SuperNet:
        start = time.perf_counter()
        fit_supernet(supernet, data, teacher.train_logits, settings, seed)
        supernet.train_seconds = time.perf_counter() - start
        supernet.trained_now = True
        with atomic_path(path) as tmp:
            torch.save({"state": supernet.state_dict(), "seconds": supernet.train_seconds}, tmp)
        return supernet

    return compute_once(cache_dir / ".supernet.lock", load, train)
