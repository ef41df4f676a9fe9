"""A candidate is one plain, frozen, serialisable config: everything needed to rebuild a trial.

The architecture is also written as a readable string, timm style: one token per stage such as
``ir_k5_e6_r2_s2_c24`` (inverted residual, kernel 5, expansion 6, 2 repeats, stride 2, 24
channels before the width multiplier), or ``ds_k3_r1_s1_c16`` for depthwise-separable.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeshrink.spaces.errors import EdgeshrinkError

_STAGE_RE = re.compile(
    r"^(?P<type>[a-z]+)_k(?P<k>\d+)(?:_e(?P<e>\d+))?_r(?P<r>\d+)_s(?P<s>\d+)_c(?P<c>\d+)$"
)
_ARCH_RE = re.compile(r"^w(?P<w>[0-9.]+):(?P<stages>.+)$")


@dataclass(frozen=True)
class StageSpec:
    block: str  # registry key, e.g. "ir" or "ds"
    kernel: int
    expansion: int  # 1 for blocks without an expansion layer
    depth: int
    stride: int
    channels: int

    def token(self) -> str:
        expand = f"_e{self.expansion}" if self.block == "ir" else ""
        return (
            f"{self.block}_k{self.kernel}{expand}_r{self.depth}_s{self.stride}_c{self.channels}"
        )


def parse_block_choice(choice: str) -> tuple[str, int, int]:
    """Split a block choice token like ``ir_k5_e6`` or ``ds_k3`` into (type, kernel, expansion)."""
    m = re.fullmatch(r"(?P<type>[a-z]+)_k(?P<k>\d+)(?:_e(?P<e>\d+))?", choice)
    if not m:
        raise EdgeshrinkError(
            f"invalid block choice {choice!r}: expected a token like 'ir_k5_e6' or 'ds_k3'"
        )
    return m["type"], int(m["k"]), int(m["e"] or 1)


def format_arch(width_mult: float, stages: tuple[StageSpec, ...]) -> str:
    return f"w{width_mult:g}:" + ",".join(s.token() for s in stages)


def parse_arch(text: str) -> tuple[float, tuple[StageSpec, ...]]:
    """Inverse of :func:`format_arch`; raises EdgeshrinkError quoting the bad part."""
    m = _ARCH_RE.match(text.strip())
    if not m:
        raise EdgeshrinkError(f"invalid architecture string {text!r}: expected 'w<mult>:<stages>'")
    stages = []
    for token in m["stages"].split(","):
        sm = _STAGE_RE.match(token)
        if not sm:
            raise EdgeshrinkError(
                f"invalid stage token {token!r} in architecture string: expected e.g. "
                "'ir_k5_e6_r2_s2_c24'"
            )
        stages.append(
            StageSpec(
                block=sm["type"],
                kernel=int(sm["k"]),
                expansion=int(sm["e"] or 1),
                depth=int(sm["r"]),
                stride=int(sm["s"]),
                channels=int(sm["c"]),
            )
        )
    return float(m["w"]), tuple(stages)


@dataclass(frozen=True)
class Candidate:
    """Every choice of one trial. Building a model from it needs no Optuna."""

    width_mult: float
    stages: tuple[StageSpec, ...]
    temperature: float
    alpha: float
    sparsity: float
    precision: str
    input_resolution: int = 16
    stem_channels: int = 16
    head_channels: int = 128
    schema: int = field(default=1)

    @property
    def arch(self) -> str:
        return format_arch(self.width_mult, self.stages)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [s.token() for s in self.stages]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise EdgeshrinkError(f"unknown candidate fields: {sorted(unknown)}")
        tokens = d.pop("stages")
        _, stages = parse_arch(f"w{d['width_mult']}:" + ",".join(tokens))
        return cls(stages=stages, **d)

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        return cls.from_dict(json.loads(text))
