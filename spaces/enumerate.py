"""What a search space offers, enumerated and sampled without torch.

A supernet needs every block configuration each stage can take (to size its blocks at their
largest) and a way to draw sub-networks (its sandwich-rule training: largest, smallest, random).
Both read the space exactly as a trial does, through ``SearchSpace.candidate_from_params``, so
this lives with the space rather than with the network that uses it.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace
from typing import Any

from edgeshrink.core.vocabulary import BLOCK_KINDS
from edgeshrink.spaces.candidate import Candidate, StageSpec
from edgeshrink.spaces.space import (
    Categorical,
    Distribution,
    FloatRange,
    IntRange,
    SearchSpace,
    stage_param,
)


@dataclass(frozen=True)
class StageOptions:
    """Every block configuration one stage of the space can take."""

    channels: int
    stride: int
    options: tuple[StageSpec, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        """Block types with weights, in vocabulary order (that of ``blocks.BLOCKS``)."""
        present = {s.block for s in self.options}
        return tuple(k for k, kind in BLOCK_KINDS.items() if not kind.empty and k in present)

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


def midpoint(space: SearchSpace, name: str) -> float:
    """The middle of a float range (else the first value): one setting for a whole supernet."""
    d = space.distributions[name]
    return (d.low + d.high) / 2 if isinstance(d, FloatRange) else float(_values(d)[0])
