"""A candidate is one plain, frozen, serialisable config: everything needed to rebuild a trial.

The architecture is also written as a readable string, timm style, ``w<width_mult>:`` followed by
one comma-separated token per stage::

    <type>_k<kernel>[_e<expansion>][_se][_hs]_r<depth>_s<stride>_c<channels>
    skip_s<stride>_c<channels>

``type`` is a block type (``ir`` inverted residual, ``ds`` depthwise separable); ``_e`` is
written for expanding types only (``ir``; read as 1 when absent); ``_se`` adds
squeeze-excitation; ``_hs`` selects hard-swish (ReLU6, the default, is not written); ``channels``
are before the width multiplier. ``skip`` marks a stride-1 stage that contributes no block.
Examples: ``ir_k5_e6_se_hs_r2_s2_c24``, ``ds_k3_hs_r1_s1_c16``, ``skip_s1_c64``; the schema-1
tokens ``ir_k5_e6_r2_s2_c24`` and ``ds_k3_r1_s1_c16`` read as before.

A block choice (the token-list form of a space) is the block part alone: ``ir_k5_e6``,
``ds_k3_se_hs``, ``skip``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import (
    ACTIVATION_TOKENS,
    BLOCK_KINDS,
    IMPORTANCE_NAMES,
    PRECISIONS,
    PRUNING_NAMES,
)

SCHEMA = 2
_ACT_OF_TOKEN = {tok: name for name, tok in ACTIVATION_TOKENS.items() if tok}
_BLOCK_PART = (
    r"(?P<type>[a-z]+)_k(?P<k>\d+)(?:_e(?P<e>\d+))?(?P<se>_se)?"
    rf"(?:_(?P<act>{'|'.join(map(re.escape, _ACT_OF_TOKEN))}))?"
)
_STAGE_RE = re.compile(rf"^{_BLOCK_PART}_r(?P<r>\d+)_s(?P<s>\d+)_c(?P<c>\d+)$")
_SKIP_RE = re.compile(r"^(?P<type>[a-z]+)_s(?P<s>\d+)_c(?P<c>\d+)$")
_CHOICE_RE = re.compile(rf"^{_BLOCK_PART}$")
_ARCH_RE = re.compile(r"^w(?P<w>[0-9.]+):(?P<stages>.+)$")


def _one_of(owner: str, name: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        raise EdgeshrinkError(
            f"{owner} field {name!r} must be one of {sorted(allowed)}; got {value!r}"
        )


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``depth`` blocks of one type; a ``skip`` stage is stored in canonical form."""

    block: str  # key of core.vocabulary.BLOCK_KINDS: "ir" | "ds" | "skip"
    kernel: int
    expansion: int  # 1 for block types without an expansion layer
    depth: int
    stride: int
    channels: int
    se: bool = False  # squeeze-excitation after the depthwise conv
    act: str = "relu6"  # key of core.vocabulary.ACTIVATION_TOKENS

    def __post_init__(self) -> None:
        _one_of("stage", "block", self.block, BLOCK_KINDS)
        _one_of("stage", "act", self.act, ACTIVATION_TOKENS)
        if self.channels < 1 or self.stride < 1:
            raise EdgeshrinkError(
                f"stage fields 'channels' and 'stride' must be >= 1; got channels="
                f"{self.channels}, stride={self.stride}"
            )
        kind = BLOCK_KINDS[self.block]
        if kind.empty:
            if self.stride != 1:
                raise EdgeshrinkError(
                    f"stage field 'block' is {self.block!r}, which is only allowed on stride-1 "
                    f"stages; got stride {self.stride}"
                )
            # One canonical form, so string -> candidate -> string round-trips losslessly.
            for name, value in (("kernel", 0), ("expansion", 1), ("depth", 0), ("se", False),
                                ("act", "relu6")):
                object.__setattr__(self, name, value)
            return
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise EdgeshrinkError(f"stage field 'kernel' must be odd and >= 1; got {self.kernel}")
        if self.depth < 1:
            raise EdgeshrinkError(f"stage field 'depth' must be >= 1; got {self.depth}")
        if self.expansion < 1 or (not kind.expands and self.expansion != 1):
            expected = ">= 1" if kind.expands else f"1 for {self.block!r} blocks"
            raise EdgeshrinkError(
                f"stage field 'expansion' must be {expected}; got {self.expansion}"
            )

    def block_choice(self) -> str:
        """The block part of the token, e.g. ``ir_k5_e6_se_hs`` or ``skip``."""
        if BLOCK_KINDS[self.block].empty:
            return self.block
        expand = f"_e{self.expansion}" if BLOCK_KINDS[self.block].expands else ""
        se = "_se" if self.se else ""
        act = f"_{ACTIVATION_TOKENS[self.act]}" if ACTIVATION_TOKENS[self.act] else ""
        return f"{self.block}_k{self.kernel}{expand}{se}{act}"

    def token(self) -> str:
        if BLOCK_KINDS[self.block].empty:
            return f"{self.block}_s{self.stride}_c{self.channels}"
        return f"{self.block_choice()}_r{self.depth}_s{self.stride}_c{self.channels}"


@dataclass(frozen=True)
class BlockChoice:
    """The block part of a stage, as listed in a space's ``choices.block`` token list."""

    block: str
    kernel: int = 0
    expansion: int = 1
    se: bool = False
    act: str = "relu6"

    def stage(self, depth: int, stride: int, channels: int) -> StageSpec:
        return StageSpec(self.block, self.kernel, self.expansion, depth, stride, channels,
                         self.se, self.act)


def parse_block_choice(choice: str) -> BlockChoice:
    """Read a block choice token like ``ir_k5_e6``, ``ds_k3_se_hs`` or ``skip``."""
    if choice in BLOCK_KINDS and BLOCK_KINDS[choice].empty:
        return BlockChoice(choice)
    m = _CHOICE_RE.fullmatch(choice)
    if not m:
        raise EdgeshrinkError(
            f"invalid block choice {choice!r}: expected a token like 'ir_k5_e6', 'ds_k3_se_hs' "
            "or 'skip'"
        )
    return BlockChoice(m["type"], int(m["k"]), int(m["e"] or 1), bool(m["se"]),
                       _ACT_OF_TOKEN.get(m["act"] or "", "relu6"))


def parse_stage(token: str) -> StageSpec:
    """Inverse of :meth:`StageSpec.token`; raises EdgeshrinkError quoting the bad token."""
    m = _STAGE_RE.match(token)
    if m:
        return StageSpec(
            block=m["type"], kernel=int(m["k"]), expansion=int(m["e"] or 1), depth=int(m["r"]),
            stride=int(m["s"]), channels=int(m["c"]), se=bool(m["se"]),
            act=_ACT_OF_TOKEN.get(m["act"] or "", "relu6"),
        )
    m = _SKIP_RE.match(token)
    if m and m["type"] in BLOCK_KINDS and BLOCK_KINDS[m["type"]].empty:
        return StageSpec(m["type"], 0, 1, 0, int(m["s"]), int(m["c"]))
    raise EdgeshrinkError(
        f"invalid stage token {token!r} in architecture string: expected e.g. "
        "'ir_k5_e6_se_hs_r2_s2_c24', 'ds_k3_r1_s1_c16' or 'skip_s1_c64'"
    )


def format_arch(width_mult: float, stages: tuple[StageSpec, ...]) -> str:
    return f"w{width_mult:g}:" + ",".join(s.token() for s in stages)


def parse_arch(text: str) -> tuple[float, tuple[StageSpec, ...]]:
    """Inverse of :func:`format_arch`; raises EdgeshrinkError quoting the bad part."""
    m = _ARCH_RE.match(text.strip())
    if not m:
        raise EdgeshrinkError(f"invalid architecture string {text!r}: expected 'w<mult>:<stages>'")
    return float(m["w"]), tuple(parse_stage(t) for t in m["stages"].split(","))


def compression_choices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Pruning method and importance names (torch-free; ``pruning`` holds the registries)."""
    return PRUNING_NAMES, IMPORTANCE_NAMES


@dataclass(frozen=True)
class Candidate:
    """Every choice of one trial. Building a model from it needs no Optuna.

    New fields carry defaults that reproduce schema-1 behaviour, so old candidates still load.
    """

    width_mult: float
    stages: tuple[StageSpec, ...]
    temperature: float
    alpha: float
    sparsity: float
    precision: str  # stem, head, classifier, and every stage unless stage_precisions says else
    input_resolution: int = 16
    stem_channels: int = 16
    head_channels: int = 128
    pruning: str = "global_magnitude"  # key of spaces.pruning.PRUNING_METHODS
    importance: str = "l1"  # key of spaces.pruning.IMPORTANCES (used by "channel")
    stage_precisions: tuple[str, ...] = ()  # one per stage; () = every stage uses precision
    act_symmetric: bool = False  # int8 activations: symmetric int8 (True) or uint8 (False)
    qat: bool = False  # quantization-aware fine-tune before export
    hint_weight: float = 0.0  # FitNets feature-distillation loss weight; 0 = off
    # int8 weights on 7 bits: set by the search, not sampled, where the scoring host's int8
    # kernels saturate (hardware_profiles.int8_arithmetic)
    reduce_range: bool = False
    schema: int = field(default=SCHEMA, init=False)

    def __post_init__(self) -> None:
        _one_of("candidate", "precision", self.precision, PRECISIONS)
        if self.stage_precisions and len(self.stage_precisions) != len(self.stages):
            raise EdgeshrinkError(
                f"candidate field 'stage_precisions' must have one entry per stage "
                f"({len(self.stages)}) or none; got {len(self.stage_precisions)}"
            )
        for p in self.stage_precisions:
            _one_of("candidate", "stage_precisions", p, PRECISIONS)
        methods, importances = compression_choices()
        _one_of("candidate", "pruning", self.pruning, methods)
        _one_of("candidate", "importance", self.importance, importances)
        for name in ("act_symmetric", "qat", "reduce_range"):
            if not isinstance(getattr(self, name), bool):
                raise EdgeshrinkError(
                    f"candidate field {name!r} must be true or false; got {getattr(self, name)!r}"
                )
        if not (math.isfinite(self.hint_weight) and self.hint_weight >= 0):
            raise EdgeshrinkError(
                f"candidate field 'hint_weight' must be >= 0; got {self.hint_weight!r}"
            )

    @property
    def arch(self) -> str:
        return format_arch(self.width_mult, self.stages)

    def precision_of_stage(self, i: int) -> str:
        return self.stage_precisions[i] if self.stage_precisions else self.precision

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [s.token() for s in self.stages]
        d["stage_precisions"] = list(self.stage_precisions)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        """Read a dict of this schema or an older one (absent fields take their defaults)."""
        d = dict(d)
        schema = d.pop("schema", 1)
        if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
            raise EdgeshrinkError(
                f"candidate field 'schema' must be 1..{SCHEMA} (a newer edgeshrink wrote it?); "
                f"got {schema!r}"
            )
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(d) - known
        if unknown:
            raise EdgeshrinkError(f"unknown candidate fields: {sorted(unknown)}")
        if "stages" not in d:
            raise EdgeshrinkError("candidate field 'stages' is missing")
        d["stages"] = tuple(parse_stage(t) for t in d["stages"])
        d["stage_precisions"] = tuple(d.get("stage_precisions", ()))
        try:
            return cls(**d)
        except TypeError as exc:  # a required field is missing
            raise EdgeshrinkError(f"candidate: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        return cls.from_dict(json.loads(text))
