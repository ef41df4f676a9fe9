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
What a file may say, and the error for what it may not, is ``space_schema``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import BLOCK_KINDS
from edgeshrink.spaces.candidate import Candidate, StageSpec, parse_block_choice
from edgeshrink.spaces.file_schema import validate
from edgeshrink.spaces.presets import PRESETS, resolve_space
from edgeshrink.spaces.space_schema import FloatBounds, SpaceFile


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


def _float_range(bounds: FloatBounds) -> FloatRange:
    return FloatRange(bounds.low, bounds.high, bounds.step)


def _ordered(values: tuple[int, ...]) -> Distribution:
    """Evenly spaced integers as an ordered range with a step; anything else as categorical."""
    v = sorted(values)
    steps = {b - a for a, b in zip(v, v[1:], strict=False)}
    if len(steps) <= 1:
        return IntRange(v[0], v[-1], steps.pop() if steps else 1)
    return Categorical(tuple(v))


def _depth(doc: SpaceFile, i: int) -> IntRange:
    depth = doc.stage_value(i, "depth")[1]
    return IntRange(1, 1) if depth is None else IntRange(depth.low, depth.high)


def _token_stage(doc: SpaceFile, i: int) -> dict[str, Distribution]:
    """Schema-1 form: one categorical block token per stage."""
    return {stage_param(i, "block"): Categorical(doc.stage_value(i, "block")[1]),
            stage_param(i, "depth"): _depth(doc, i)}


def _factor_stage(doc: SpaceFile, i: int) -> dict[str, Distribution]:
    """Schema-2 form: each block factor its own parameter, present only where it can matter."""
    kinds = doc.stage_value(i, "block_type")[1]
    dists: dict[str, Distribution] = {stage_param(i, "block_type"): Categorical(kinds)}
    if all(BLOCK_KINDS[k].empty for k in kinds):
        return dists
    dists[stage_param(i, "kernel")] = _ordered(doc.stage_value(i, "kernel")[1])
    if any(BLOCK_KINDS[k].expands for k in kinds):
        dists[stage_param(i, "expansion")] = _ordered(doc.stage_value(i, "expansion")[1])
    for factor in ("se", "activation"):
        values = doc.stage_value(i, factor)[1]
        if values is not None:
            dists[stage_param(i, factor)] = Categorical(values)
    dists[stage_param(i, "depth")] = _depth(doc, i)
    return dists


def parse_space(raw: Any, source: str = "space") -> SearchSpace:
    """Validate a space document (``space_schema``: every error names the file and the field)
    and lay it out as distributions, in the order the samplers draw them."""
    doc = validate(SpaceFile, raw, source)
    choices = doc.choices
    dists: dict[str, Distribution] = {"width_mult": _float_range(choices.width_mult)}
    for i in range(len(doc.stages)):
        dists |= _token_stage(doc, i) if doc.tokens else _factor_stage(doc, i)
    dists["temperature"] = _float_range(choices.temperature)
    dists["alpha"] = _float_range(choices.alpha)
    dists["sparsity"] = _float_range(choices.sparsity)
    dists["precision"] = Categorical(choices.precision)
    if choices.mixed_precision:
        for i in range(len(doc.stages)):
            dists[stage_param(i, "precision")] = Categorical(choices.precision)
    for name in ("pruning", "importance", "act_symmetric", "qat"):
        if getattr(choices, name) is not None:
            dists[name] = Categorical(getattr(choices, name))
    if choices.hint_weight is not None:
        dists["hint_weight"] = _float_range(choices.hint_weight)
    return SearchSpace(doc.input_resolution, doc.stem_channels, doc.head_channels,
                       tuple((s.channels, s.stride) for s in doc.stages), dists)


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Load the default space shipped with edgeshrink, a preset by name (``spaces.presets``),
    or a user's YAML file."""
    if path is None:
        text = resources.files("edgeshrink.spaces").joinpath("default_space.yaml").read_text()
        source = "default_space.yaml"
    else:
        file = resolve_space(path)
        text = file.read_text()
        source = file.name if str(path) in PRESETS else str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EdgeshrinkError(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_space(raw, source)
