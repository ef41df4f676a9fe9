"""The search space as validated data: which parameters exist and which values they may take.

Sampling with Optuna lives in ``edgeshrink.search``; this module only declares the space and turns
a plain ``params`` dict (as stored with an Optuna trial) back into a :class:`Candidate`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgeshrink.spaces.candidate import Candidate, StageSpec, parse_block_choice
from edgeshrink.spaces.errors import EdgeshrinkError
from edgeshrink.spaces.quantization_choices import PRECISIONS


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]


Distribution = FloatRange | IntRange | Categorical


@dataclass(frozen=True)
class SearchSpace:
    input_resolution: int
    stem_channels: int
    head_channels: int
    stage_skeleton: tuple[tuple[int, int], ...]  # (channels, stride) per stage
    distributions: dict[str, Distribution]

    def with_precisions(self, allowed: tuple[str, ...]) -> SearchSpace:
        """The space cut to the precisions a device runs, so the sampler never wastes a trial.

        Raises if none is left: the space and the device have nothing in common.
        """
        declared = self.distributions["precision"].choices
        kept = tuple(p for p in declared if p in allowed)
        if not kept:
            raise EdgeshrinkError(
                f"the space's precisions {list(declared)} are none of those the profile runs "
                f"({list(allowed)}); add one of them to 'choices.precision' (--space FILE)"
            )
        return replace(self, distributions={**self.distributions,
                                            "precision": Categorical(kept)})

    def candidate_from_params(self, params: dict[str, Any]) -> Candidate:
        """Rebuild the candidate of a trial from its stored parameters alone."""
        missing = [name for name in self.distributions if name not in params]
        if missing:
            raise EdgeshrinkError(f"trial parameters lack {missing}; was it made with this space?")
        stages = []
        for i, (channels, stride) in enumerate(self.stage_skeleton):
            block, kernel, expansion = parse_block_choice(params[f"stage{i}_block"])
            stages.append(
                StageSpec(
                    block, kernel, expansion, int(params[f"stage{i}_depth"]), stride, channels
                )
            )
        return Candidate(
            width_mult=float(params["width_mult"]),
            stages=tuple(stages),
            temperature=float(params["temperature"]),
            alpha=float(params["alpha"]),
            sparsity=float(params["sparsity"]),
            precision=str(params["precision"]),
            input_resolution=self.input_resolution,
            stem_channels=self.stem_channels,
            head_channels=self.head_channels,
        )


def _float_range(name: str, raw: Any, low_bound: float, high_bound: float) -> FloatRange:
    if not isinstance(raw, dict) or not {"low", "high"} <= set(raw):
        raise EdgeshrinkError(f"space field 'choices.{name}' needs 'low' and 'high'")
    low, high, step = float(raw["low"]), float(raw["high"]), raw.get("step")
    if not (low_bound <= low <= high <= high_bound):
        raise EdgeshrinkError(
            f"space field 'choices.{name}' must satisfy {low_bound} <= low <= high <= "
            f"{high_bound}; got low={low}, high={high}"
        )
    return FloatRange(low, high, None if step is None else float(step))


def parse_space(raw: dict[str, Any], source: str = "space") -> SearchSpace:
    """Validate a space document; every error names the field and what was expected."""
    from edgeshrink.spaces.blocks import BLOCKS  # registry of block types

    if not isinstance(raw, dict):
        raise EdgeshrinkError(f"{source}: expected a mapping at the top level")
    try:
        stages = tuple((int(s["channels"]), int(s["stride"])) for s in raw["stages"])
        choices = raw["choices"]
        resolution = int(raw.get("input_resolution", 16))
        stem = int(raw.get("stem_channels", 16))
        head = int(raw.get("head_channels", 128))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeshrinkError(f"{source}: missing or malformed field {exc}") from None
    if not stages or any(c <= 0 or s not in (1, 2) for c, s in stages):
        raise EdgeshrinkError(f"{source}: 'stages' needs channels > 0 and stride 1 or 2")
    if not 8 <= resolution <= 256:
        raise EdgeshrinkError(f"{source}: 'input_resolution' must be in 8..256, got {resolution}")

    dists: dict[str, Distribution] = {}
    blocks = tuple(choices.get("block", ()))
    for token in blocks:
        kind, kernel, _ = parse_block_choice(token)
        if kind not in BLOCKS:
            raise EdgeshrinkError(
                f"{source}: 'choices.block' has unknown block type {kind!r}; "
                f"known: {sorted(BLOCKS)}"
            )
        if kernel % 2 == 0:
            raise EdgeshrinkError(f"{source}: 'choices.block' kernel must be odd, got {token!r}")
    if not blocks:
        raise EdgeshrinkError(f"{source}: 'choices.block' must list at least one block token")
    depth = choices.get("depth", {"low": 1, "high": 1})
    if int(depth["low"]) < 1 or int(depth["high"]) < int(depth["low"]):
        raise EdgeshrinkError(f"{source}: 'choices.depth' needs 1 <= low <= high")
    dists["width_mult"] = _float_range("width_mult", choices.get("width_mult"), 0.1, 4.0)
    for i in range(len(stages)):
        dists[f"stage{i}_block"] = Categorical(blocks)
        dists[f"stage{i}_depth"] = IntRange(int(depth["low"]), int(depth["high"]))
    dists["temperature"] = _float_range("temperature", choices.get("temperature"), 0.5, 50.0)
    dists["alpha"] = _float_range("alpha", choices.get("alpha"), 0.0, 1.0)
    dists["sparsity"] = _float_range("sparsity", choices.get("sparsity"), 0.0, 0.99)
    precisions = tuple(choices.get("precision", ()))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if not precisions or unknown:
        raise EdgeshrinkError(
            f"{source}: 'choices.precision' must be a non-empty subset of {sorted(PRECISIONS)}; "
            f"got {list(precisions)}"
        )
    dists["precision"] = Categorical(precisions)
    return SearchSpace(resolution, stem, head, stages, dists)


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
