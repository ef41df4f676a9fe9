"""The search space as validated data: which parameters exist and which values they may take.

Sampling with Optuna lives in ``edgeshrink.search``; this module only declares the space and turns
a plain ``params`` dict (as stored with an Optuna trial) back into a :class:`Candidate`.

Blocks are declared in one of two forms (a file gives one, not both):

* factors (schema 2): ``choices.block_type``, ``kernel``, ``expansion``, ``se``, ``activation``,
  each sampled per stage as its own parameter (``stage{i}_type``, ``stage{i}_kernel``, ...) so the
  samplers see the order of kernels and expansions; any ``stages:`` entry may override them;
* tokens (schema 1): ``choices.block: [ir_k3_e3, ds_k5, ...]``, one categorical ``stage{i}_block``.

An ordered choice (kernel, expansion) whose values are evenly spaced becomes an integer range with
that step; otherwise it stays categorical, since Optuna's integer ranges cannot skip values.
A stage's factor parameter exists only where it can matter (no ``stage{i}_expansion`` for a stage
offering only ``ds``); parameters absent from the space take the Candidate defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import (
    ACTIVATION_TOKENS,
    BLOCK_KINDS,
    EXPANSIONS,
    KERNELS,
    PRECISIONS,
)
from edgeshrink.spaces.candidate import (
    Candidate,
    StageSpec,
    compression_choices,
    parse_block_choice,
)


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]


Distribution = FloatRange | IntRange | Categorical

_TOP_FIELDS = ("version", "input_resolution", "stem_channels", "head_channels", "stages",
               "choices")
_FACTORS = ("block_type", "kernel", "expansion", "se", "activation")  # factor form, per stage
_STAGE_FIELDS = ("channels", "stride", "depth")  # besides the block fields of the file's form
_CHOICE_FIELDS = ("block", *_FACTORS, "depth", "width_mult", "temperature", "alpha", "sparsity",
                  "precision", "mixed_precision", "pruning", "importance", "act_symmetric", "qat",
                  "hint_weight")
# Factors a file leaves out: the block types and their full option ranges; SE and activation
# left out take the StageSpec defaults (no parameter at all).
_FACTOR_DEFAULTS: dict[str, list[Any]] = {"block_type": ["ir", "ds"], "kernel": list(KERNELS),
                                          "expansion": list(EXPANSIONS)}
_STAGE_PARAM = {"block_type": "type"}  # factor -> parameter suffix where the names differ


def stage_param(i: int, factor: str) -> str:
    """The Optuna parameter name of one stage's factor, e.g. ``stage2_kernel``."""
    return f"stage{i}_{_STAGE_PARAM.get(factor, factor)}"


@dataclass(frozen=True)
class SearchSpace:
    input_resolution: int
    stem_channels: int
    head_channels: int
    stage_skeleton: tuple[tuple[int, int], ...]  # (channels, stride) per stage
    distributions: dict[str, Distribution]

    def with_precisions(self, allowed: tuple[str, ...]) -> SearchSpace:
        """The space cut to the precisions a device runs, so the sampler never wastes a trial.

        Cuts ``precision`` and every ``stage{i}_precision``; raises if none is left: the space
        and the device have nothing in common.
        """
        declared = self.distributions["precision"].choices
        kept = tuple(p for p in declared if p in allowed)
        if not kept:
            raise EdgeshrinkError(
                f"the space's precisions {list(declared)} are none of those the profile runs "
                f"({list(allowed)}); add one of them to 'choices.precision' (--space FILE)"
            )
        stages = range(len(self.stage_skeleton))
        names = ["precision", *(stage_param(i, "precision") for i in stages)]
        cut = {n: Categorical(kept) for n in names if n in self.distributions}
        return replace(self, distributions={**self.distributions, **cut})

    def candidate_from_params(self, params: dict[str, Any]) -> Candidate:
        """Rebuild the candidate of a trial from its stored parameters alone."""
        missing = [name for name in self.distributions if name not in params]
        if missing:
            raise EdgeshrinkError(f"trial parameters lack {missing}; was it made with this space?")
        stages = tuple(self._stage(i, channels, stride, params)
                       for i, (channels, stride) in enumerate(self.stage_skeleton))
        stage_precisions = tuple(params[stage_param(i, "precision")] for i in range(len(stages))
                                 if stage_param(i, "precision") in self.distributions)
        optional = {name: params[name] for name in
                    ("pruning", "importance", "act_symmetric", "qat") if name in self.distributions}
        if "hint_weight" in self.distributions:
            optional["hint_weight"] = float(params["hint_weight"])
        return Candidate(
            width_mult=float(params["width_mult"]),
            stages=stages,
            temperature=float(params["temperature"]),
            alpha=float(params["alpha"]),
            sparsity=float(params["sparsity"]),
            precision=str(params["precision"]),
            input_resolution=self.input_resolution,
            stem_channels=self.stem_channels,
            head_channels=self.head_channels,
            stage_precisions=stage_precisions,
            **optional,
        )

    def _stage(self, i: int, channels: int, stride: int, params: dict[str, Any]) -> StageSpec:
        def get(factor: str, default: Any) -> Any:
            name = stage_param(i, factor)
            return params[name] if name in self.distributions else default

        depth = int(get("depth", 1))
        if stage_param(i, "block") in self.distributions:  # token form
            return parse_block_choice(get("block", "")).stage(depth, stride, channels)
        kind = get("block_type", "")
        info = BLOCK_KINDS.get(kind)  # None: StageSpec names the unknown type
        if info is not None and info.empty:
            return StageSpec(kind, 0, 1, 0, stride, channels)
        expansion = int(get("expansion", 1)) if info is None or info.expands else 1
        return StageSpec(kind, int(get("kernel", 3)), expansion, depth, stride, channels,
                         se=get("se", False), act=get("activation", "relu6"))


def _float_range(source: str, name: str, raw: Any, low_bound: float,
                 high_bound: float) -> FloatRange:
    if not isinstance(raw, dict) or not {"low", "high"} <= set(raw):
        raise EdgeshrinkError(f"{source}: space field 'choices.{name}' needs 'low' and 'high'")
    low, high, step = float(raw["low"]), float(raw["high"]), raw.get("step")
    if not (low_bound <= low <= high <= high_bound):
        raise EdgeshrinkError(
            f"{source}: space field 'choices.{name}' must satisfy {low_bound} <= low <= high <= "
            f"{high_bound}; got low={low}, high={high}"
        )
    return FloatRange(low, high, None if step is None else float(step))


def _subset(source: str, where: str, raw: Any, allowed: tuple[Any, ...] | list[Any]) -> tuple:
    """A non-empty list of distinct allowed values, in the file's order."""
    ok = (isinstance(raw, list) and raw and len(set(map(repr, raw))) == len(raw)
          and all(any(v == a and type(v) is type(a) for a in allowed) for v in raw))
    if not ok:
        raise EdgeshrinkError(
            f"{source}: '{where}' must be a non-empty subset of {list(allowed)}; got {raw!r}"
        )
    return tuple(raw)


def _ordered(values: tuple[int, ...]) -> Distribution:
    """Evenly spaced integers as an ordered range with a step; anything else as categorical."""
    v = sorted(values)
    steps = {b - a for a, b in zip(v, v[1:], strict=False)}
    if len(steps) <= 1:
        return IntRange(v[0], v[-1], steps.pop() if steps else 1)
    return Categorical(tuple(v))


def _depth(source: str, where: str, raw: Any) -> IntRange:
    try:
        low, high = int(raw["low"]), int(raw["high"])
    except (KeyError, TypeError, ValueError):
        raise EdgeshrinkError(f"{source}: '{where}' needs integer 'low' and 'high'") from None
    if low < 1 or high < low:
        raise EdgeshrinkError(f"{source}: '{where}' needs 1 <= low <= high; got {low}..{high}")
    return IntRange(low, high)


def _unknown(source: str, where: str, given: Any, known: tuple[str, ...]) -> None:
    extra = sorted(set(given) - set(known))
    if extra:
        raise EdgeshrinkError(
            f"{source}: unknown field(s) {extra} in {where}; known: {list(known)}"
        )


def _skeleton(source: str, raw: Any, block_fields: tuple[str, ...]) -> list[tuple[int, int]]:
    if not isinstance(raw, list) or not raw:
        raise EdgeshrinkError(f"{source}: 'stages' must be a non-empty list of "
                              "{channels, stride} entries")
    out = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            raise EdgeshrinkError(f"{source}: 'stages[{i}]' must be a mapping")
        _unknown(source, f"'stages[{i}]'", s, (*_STAGE_FIELDS, *block_fields))
        channels, stride = s.get("channels"), s.get("stride")
        if not isinstance(channels, int) or channels <= 0:
            raise EdgeshrinkError(f"{source}: 'stages[{i}].channels' must be an integer > 0; "
                                  f"got {channels!r}")
        if stride not in (1, 2):
            raise EdgeshrinkError(f"{source}: 'stages[{i}].stride' must be 1 or 2; got {stride!r}")
        out.append((channels, stride))
    return out


def _stage_choice(stage: dict, choices: dict, i: int, factor: str) -> tuple[str, Any]:
    """(where, raw value) of a per-stage factor: the stage's override, else the global one."""
    if factor in stage:
        return f"stages[{i}].{factor}", stage[factor]
    return f"choices.{factor}", choices.get(factor, _FACTOR_DEFAULTS.get(factor))


def _no_skip_on_stride2(source: str, where: str, i: int, stride: int, kinds: tuple) -> None:
    if stride != 1 and any(BLOCK_KINDS[k].empty for k in kinds):
        raise EdgeshrinkError(
            f"{source}: '{where}' offers 'skip' to stage {i}, which has stride {stride}; skip is "
            f"only allowed on stride-1 stages (override 'block_type' in stages[{i}])"
        )


def _token_stage(source: str, raw_stages: list, choices: dict, i: int, stride: int,
                 dists: dict[str, Distribution]) -> None:
    """Schema-1 form: one categorical block token per stage."""
    stage = raw_stages[i]
    where = f"stages[{i}].block" if "block" in stage else "choices.block"
    tokens = stage.get("block", choices.get("block"))
    if not isinstance(tokens, list) or not tokens:
        raise EdgeshrinkError(f"{source}: '{where}' must list at least one block token")
    kinds = []
    for token in tokens:
        choice = parse_block_choice(str(token))
        if choice.block not in BLOCK_KINDS:
            raise EdgeshrinkError(f"{source}: '{where}' has unknown block type "
                                  f"{choice.block!r}; known: {sorted(BLOCK_KINDS)}")
        if not BLOCK_KINDS[choice.block].empty and choice.kernel % 2 == 0:
            raise EdgeshrinkError(f"{source}: '{where}' kernel must be odd, got {token!r}")
        kinds.append(choice.block)
    _no_skip_on_stride2(source, where, i, stride, tuple(kinds))
    dists[stage_param(i, "block")] = Categorical(tuple(tokens))
    where, depth = ((f"stages[{i}].depth", stage["depth"]) if "depth" in stage
                    else ("choices.depth", choices.get("depth", {"low": 1, "high": 1})))
    dists[stage_param(i, "depth")] = _depth(source, where, depth)


def _factor_stage(source: str, raw_stages: list, choices: dict, i: int, stride: int,
                  dists: dict[str, Distribution]) -> None:
    """Schema-2 form: each block factor its own parameter, present only where it can matter."""
    stage = raw_stages[i]
    where, raw = _stage_choice(stage, choices, i, "block_type")
    kinds = _subset(source, where, raw, tuple(BLOCK_KINDS))
    _no_skip_on_stride2(source, where, i, stride, kinds)
    dists[stage_param(i, "block_type")] = Categorical(kinds)
    if all(BLOCK_KINDS[k].empty for k in kinds):
        return
    where, raw = _stage_choice(stage, choices, i, "kernel")
    dists[stage_param(i, "kernel")] = _ordered(_subset(source, where, raw, KERNELS))
    if any(BLOCK_KINDS[k].expands for k in kinds):
        where, raw = _stage_choice(stage, choices, i, "expansion")
        dists[stage_param(i, "expansion")] = _ordered(_subset(source, where, raw, EXPANSIONS))
    for factor, allowed in (("se", [False, True]), ("activation", list(ACTIVATION_TOKENS))):
        where, raw = _stage_choice(stage, choices, i, factor)
        if raw is not None:
            dists[stage_param(i, factor)] = Categorical(_subset(source, where, raw, allowed))
    where, depth = ((f"stages[{i}].depth", stage["depth"]) if "depth" in stage
                    else ("choices.depth", choices.get("depth", {"low": 1, "high": 1})))
    dists[stage_param(i, "depth")] = _depth(source, where, depth)


def parse_space(raw: dict[str, Any], source: str = "space") -> SearchSpace:
    """Validate a space document; every error names the field and what was expected."""
    if not isinstance(raw, dict):
        raise EdgeshrinkError(f"{source}: expected a mapping at the top level")
    _unknown(source, "the top level", raw, _TOP_FIELDS)
    choices = raw.get("choices")
    if not isinstance(choices, dict):
        raise EdgeshrinkError(f"{source}: 'choices' must be a mapping of the searched fields")
    _unknown(source, "'choices'", choices, _CHOICE_FIELDS)
    tokens = "block" in choices or any("block" in s for s in raw.get("stages") or []
                                       if isinstance(s, dict))
    factors = [f for f in _FACTORS if f in choices]
    if tokens and factors:
        raise EdgeshrinkError(
            f"{source}: give blocks either as the token list 'choices.block' or as the factors "
            f"{['choices.' + f for f in _FACTORS]}, not both (found 'block' and {factors})"
        )
    block_fields = ("block",) if tokens else _FACTORS
    stages = _skeleton(source, raw.get("stages"), block_fields)
    sizes = {}
    for name, default in (("input_resolution", 16), ("stem_channels", 16),
                          ("head_channels", 128)):
        value = raw.get(name, default)
        if not isinstance(value, int) or value <= 0:
            raise EdgeshrinkError(f"{source}: '{name}' must be an integer > 0; got {value!r}")
        sizes[name] = value
    if not 8 <= sizes["input_resolution"] <= 256:
        raise EdgeshrinkError(
            f"{source}: 'input_resolution' must be in 8..256, got {sizes['input_resolution']}"
        )

    dists: dict[str, Distribution] = {}
    dists["width_mult"] = _float_range(source, "width_mult", choices.get("width_mult"), 0.1, 4.0)
    add_stage = _token_stage if tokens else _factor_stage
    for i, (_, stride) in enumerate(stages):
        add_stage(source, raw["stages"], choices, i, stride, dists)
    dists["temperature"] = _float_range(source, "temperature", choices.get("temperature"),
                                        0.5, 50.0)
    dists["alpha"] = _float_range(source, "alpha", choices.get("alpha"), 0.0, 1.0)
    dists["sparsity"] = _float_range(source, "sparsity", choices.get("sparsity"), 0.0, 0.99)
    precisions = _subset(source, "choices.precision", choices.get("precision"), PRECISIONS)
    dists["precision"] = Categorical(precisions)
    mixed = choices.get("mixed_precision", False)
    if not isinstance(mixed, bool):
        raise EdgeshrinkError(f"{source}: 'choices.mixed_precision' must be true or false; "
                              f"got {mixed!r}")
    if mixed:
        for i in range(len(stages)):
            dists[stage_param(i, "precision")] = Categorical(precisions)
    methods, importances = compression_choices()
    for name, allowed in (("pruning", methods), ("importance", importances),
                          ("act_symmetric", (False, True)), ("qat", (False, True))):
        if name in choices:
            dists[name] = Categorical(_subset(source, f"choices.{name}", choices[name], allowed))
    if "hint_weight" in choices:
        dists["hint_weight"] = _float_range(source, "hint_weight", choices["hint_weight"],
                                            0.0, 100.0)
    return SearchSpace(sizes["input_resolution"], sizes["stem_channels"], sizes["head_channels"],
                       tuple(stages), dists)


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Load the default space shipped with edgeshrink, or a user's YAML file."""
    if path is None:
        text = resources.files("edgeshrink.spaces").joinpath("default_space.yaml").read_text()
        source = "default_space.yaml"
    else:
        p = Path(path)
        if not p.is_file():
            raise EdgeshrinkError(f"space file {str(p)!r} does not exist")
        text, source = p.read_text(), str(p)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EdgeshrinkError(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_space(raw, source)
