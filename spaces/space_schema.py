"""The search-space YAML as pydantic models: which keys a file may give, which values each takes.

Each value is checked where the file gives it (a stage's override under ``stages[i]``, the
space-wide choice under ``choices``), so an error names that field. ``space.py`` lays a valid
file out as the samplers' distributions. A file gives blocks in one form, not both: block tokens
(``block: [ir_k3_e3, ds_k5]``) or factors (``block_type``, ``kernel``, ``expansion``, ``se``,
``activation``).

Optional keys default to None; a null written in the file is validated like any other value and
refused (a default is never validated), as the hand-written checks did.
"""

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, Field, Strict, model_validator

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import (
    ACTIVATION_TOKENS,
    BLOCK_KINDS,
    EXPANSIONS,
    KERNELS,
    PRECISIONS,
)
from edgeshrink.spaces.candidate import compression_choices, parse_block_choice
from edgeshrink.spaces.file_schema import Section, problem, said

FACTORS = ("block_type", "kernel", "expansion", "se", "activation")  # the factor form's keys
# Factors a file leaves out: the block types and their full option ranges; SE and activation
# left out take the StageSpec defaults (no parameter at all).
FACTOR_DEFAULTS: dict[str, tuple[Any, ...]] = {"block_type": ("ir", "ds"), "kernel": KERNELS,
                                               "expansion": EXPANSIONS}


def subset_of(allowed: tuple[Any, ...]) -> Any:
    """A non-empty list of distinct values of ``allowed``, as a tuple in the file's order.

    Strict, as before: ``true`` is not the expansion 1, nor ``0`` false."""
    def members(values: list[Any]) -> tuple[Any, ...]:
        if len(set(values)) != len(values) or any(v not in allowed for v in values):
            raise problem("not a subset")  # reworded by said() below
        return tuple(values)

    item = Annotated[type(allowed[0]), Strict()]
    return Annotated[list[item], Strict(), Field(min_length=1), AfterValidator(members),
                     said(f"must be a non-empty subset of {list(allowed)}; got {{got}}")]


class FloatBounds(BaseModel):  # other keys are ignored, as they always were
    low: float
    high: float
    step: float | None = None


def float_range(lowest: float, highest: float) -> Any:
    """``{low, high[, step]}`` with ``lowest <= low <= high <= highest``."""
    def within(b: FloatBounds) -> FloatBounds:
        if not lowest <= b.low <= b.high <= highest:
            raise problem(f"must satisfy {lowest} <= low <= high <= {highest}; "
                          f"got low={b.low}, high={b.high}")
        return b

    return Annotated[FloatBounds, said("needs numeric 'low' and 'high'; got {got}"),
                     AfterValidator(within)]


class DepthBounds(BaseModel):  # blocks per stage; other keys are ignored, as they always were
    low: int
    high: int


def _depth_order(d: DepthBounds) -> DepthBounds:
    if d.low < 1 or d.high < d.low:
        raise problem(f"needs 1 <= low <= high; got {d.low}..{d.high}")
    return d


def _known_tokens(tokens: list[Any]) -> tuple[Any, ...]:
    for token in tokens:
        try:
            choice = parse_block_choice(str(token))
        except EdgeshrinkError as exc:
            raise problem(f"lists {exc}") from None
        if choice.block not in BLOCK_KINDS:
            raise problem(f"has unknown block type {choice.block!r}; known: {sorted(BLOCK_KINDS)}")
        if not BLOCK_KINDS[choice.block].empty and choice.kernel % 2 == 0:
            raise problem(f"kernel must be odd, got {token!r}")
    return tuple(tokens)


def _in_8_to_256(value: int) -> int:
    if not 8 <= value <= 256:
        raise problem(f"must be in 8..256, got {value}")
    return value


_METHODS, _IMPORTANCES = compression_choices()
PositiveInt = Annotated[int, Strict(), Field(gt=0), said("must be an integer > 0; got {got}")]
Resolution = Annotated[PositiveInt, AfterValidator(_in_8_to_256)]
Stride = Annotated[Literal[1, 2], said("must be 1 or 2; got {got}")]
Depth = Annotated[DepthBounds, said("needs integer 'low' and 'high'"),
                  AfterValidator(_depth_order)]
Tokens = Annotated[list[Any], Strict(), Field(min_length=1),
                   said("must list at least one block token"), AfterValidator(_known_tokens)]
BlockTypes = subset_of(tuple(BLOCK_KINDS))
Kernels = subset_of(KERNELS)
Expansions = subset_of(EXPANSIONS)
Switches = subset_of((False, True))
Activations = subset_of(tuple(ACTIVATION_TOKENS))
Precisions = subset_of(PRECISIONS)
Methods = subset_of(_METHODS)
Importances = subset_of(_IMPORTANCES)
Switch = Annotated[bool, Strict(), said("must be true or false; got {got}")]
WidthMult = float_range(0.1, 4.0)
Temperature = float_range(0.5, 50.0)
Alpha = float_range(0.0, 1.0)
Sparsity = float_range(0.0, 0.99)
HintWeight = float_range(0.0, 100.0)


class BlockFactors(Section):
    """The per-block choices a stage may override: given in ``choices`` or in a stage."""

    block: Tokens = None
    block_type: BlockTypes = None
    kernel: Kernels = None
    expansion: Expansions = None
    se: Switches = None
    activation: Activations = None
    depth: Depth = None


class Stage(BlockFactors):
    """One entry of ``stages``: its fixed skeleton, and overrides of the space-wide choices."""

    channels: PositiveInt
    stride: Stride


class Choices(BlockFactors):
    """``choices``: what is searched, for every stage unless a stage overrides it."""

    width_mult: WidthMult
    temperature: Temperature
    alpha: Alpha
    sparsity: Sparsity
    precision: Precisions
    mixed_precision: Switch = False  # also sample stage{i}_precision from ``precision``
    pruning: Methods = None
    importance: Importances = None
    act_symmetric: Switches = None
    qat: Switches = None
    hint_weight: HintWeight = None


class SpaceFile(Section):
    """A whole space file; ``version`` is informative (1: tokens, 2: factors), the keys decide."""

    version: Any = None
    input_resolution: Resolution = 16
    stem_channels: PositiveInt = 16
    head_channels: PositiveInt = 128
    stages: Annotated[list[Stage], Strict(), Field(min_length=1),
                      said("must be a non-empty list of {channels, stride} entries", below=False)]
    choices: Annotated[Choices, said("must be a mapping of the searched fields", below=False)]

    @property
    def tokens(self) -> bool:
        """Blocks given as token lists (schema 1) rather than as factors."""
        return self.choices.block is not None or any(s.block is not None for s in self.stages)

    def stage_value(self, i: int, factor: str) -> tuple[str, Any]:
        """(field path, value) of a stage's factor or depth: its own override, else the
        space-wide choice, else the default (None: the parameter is left out)."""
        own = getattr(self.stages[i], factor)
        if own is not None:
            return f"stages[{i}].{factor}", own
        shared = getattr(self.choices, factor)
        return f"choices.{factor}", FACTOR_DEFAULTS.get(factor) if shared is None else shared

    @model_validator(mode="after")
    def _one_block_form_and_no_skip_on_stride_2(self) -> Self:
        if self.tokens:
            factors = [f for f in FACTORS if getattr(self.choices, f) is not None]
            factors += [f"stages[{i}].{f}" for i, s in enumerate(self.stages) for f in FACTORS
                        if getattr(s, f) is not None]
            if factors:
                raise problem(
                    f"give blocks either as the token list 'choices.block' or as the factors "
                    f"{['choices.' + f for f in FACTORS]}, not both (found 'block' and {factors})"
                )
        for i, stage in enumerate(self.stages):
            where, kinds = self.stage_value(i, "block" if self.tokens else "block_type")
            if kinds is None:
                raise problem("must list at least one block token", at=where)
            if self.tokens:
                kinds = [parse_block_choice(str(t)).block for t in kinds]
            if stage.stride != 1 and any(BLOCK_KINDS[k].empty for k in kinds):
                raise problem(
                    f"offers 'skip' to stage {i}, which has stride {stage.stride}; skip is only "
                    f"allowed on stride-1 stages (override 'block_type' in stages[{i}])", at=where)
        return self
