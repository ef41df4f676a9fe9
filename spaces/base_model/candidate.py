"""A base candidate: how one compressed copy of the user's own model is made. Plain, frozen and
serialisable like a student's :class:`~edgeshrink.spaces.candidate.Candidate`; the two are told
apart by ``family`` (:func:`edgeshrink.spaces.families.candidate_from_dict`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import IMPORTANCE_NAMES, PRECISIONS, PRUNING_NAMES
from edgeshrink.spaces.base_model.groups import DEFAULT_GROUPS
from edgeshrink.spaces.base_model.spec import ModelSpec

FAMILY = "base"
# Unstructured or 2:4 sparsity applied after channel pruning; "none" keeps the weights dense.
SPARSITY_METHODS = ("none", *(m for m in PRUNING_NAMES if m != "channel"))
MAX_CHANNEL_RATIO = 0.9  # a group's scaled ratio is capped here: no stage is emptied


def _fail(name: str, expected: str, got: Any) -> EdgeshrinkError:
    return EdgeshrinkError(f"base candidate field {name!r} must be {expected}; got {got!r}")


@dataclass(frozen=True)
class BaseCandidate:
    model: ModelSpec
    channel_ratio: float  # fraction of each prunable group's output channels removed
    importance: str = "l1"  # key of spaces.pruning.IMPORTANCES
    group_scales: tuple[float, ...] = ()  # per stage group, multiplies channel_ratio; () = 1
    pruning: str = "none"  # SPARSITY_METHODS: extra sparsity after channel pruning
    sparsity: float = 0.0
    precision: str = "fp32"  # stem-less parts: whatever is in no stage group (the classifier)
    stage_precisions: tuple[str, ...] = ()  # per stage group; () = every group uses precision
    act_symmetric: bool = False
    qat: bool = False
    reduce_range: bool = False  # set by the search where the host's int8 kernels saturate
    temperature: float = 4.0
    alpha: float = 0.7
    finetune_epochs: int = 1  # distillation from the unpruned model after pruning; 0 = none
    input_resolution: int = 32
    groups: int = DEFAULT_GROUPS
    family: str = field(default=FAMILY, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSpec):
            raise _fail("model", "a model spec", self.model)
        if not 0.0 <= self.channel_ratio < 1.0:
            raise _fail("channel_ratio", "in [0, 1)", self.channel_ratio)
        checks = (("importance", self.importance, IMPORTANCE_NAMES),
                  ("pruning", self.pruning, SPARSITY_METHODS),
                  ("precision", self.precision, PRECISIONS))
        for name, value, allowed in checks:
            if value not in allowed:
                raise _fail(name, f"one of {list(allowed)}", value)
        for p in self.stage_precisions:
            if p not in PRECISIONS:
                raise _fail("stage_precisions", f"entries of {list(PRECISIONS)}", p)
        if any(not (math.isfinite(s) and s > 0) for s in self.group_scales):
            raise _fail("group_scales", "positive numbers", self.group_scales)
        for name, n in (("group_scales", len(self.group_scales)),
                        ("stage_precisions", len(self.stage_precisions))):
            if n not in (0, self.groups):
                raise _fail(name, f"{self.groups} entries (one per stage group) or none", n)
        if not 0.0 <= self.sparsity < 1.0:
            raise _fail("sparsity", "in [0, 1)", self.sparsity)
        if self.finetune_epochs < 0 or self.input_resolution < 1 or self.groups < 1:
            raise _fail("finetune_epochs / input_resolution / groups", ">= 0 / >= 1 / >= 1",
                        (self.finetune_epochs, self.input_resolution, self.groups))

    @property
    def arch(self) -> str:
        """A label for plots and tables, e.g. ``resnet18 keep 0.65 int8``."""
        precisions = "/".join(dict.fromkeys(self.stage_precisions or (self.precision,)))
        return f"{self.model.name} keep {1 - self.channel_ratio:.2f} {precisions}"

    def group_ratio(self, group: int) -> float:
        scale = self.group_scales[group] if self.group_scales else 1.0
        return min(MAX_CHANNEL_RATIO, self.channel_ratio * scale)

    def precision_of_stage(self, group: int) -> str:
        return self.stage_precisions[group] if self.stage_precisions else self.precision

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["model"] = self.model.to_dict()
        out["group_scales"] = list(self.group_scales)
        out["stage_precisions"] = list(self.stage_precisions)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaseCandidate:
        d = dict(d)
        if d.pop("family", FAMILY) != FAMILY:
            raise EdgeshrinkError("base candidate: field 'family' must be 'base'")
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(d) - known
        if unknown:
            raise EdgeshrinkError(f"unknown base candidate fields: {sorted(unknown)}")
        if "model" not in d:
            raise EdgeshrinkError("base candidate field 'model' is missing")
        d["model"] = ModelSpec.from_dict(d["model"])
        d["group_scales"] = tuple(float(s) for s in d.get("group_scales", ()))
        d["stage_precisions"] = tuple(d.get("stage_precisions", ()))
        try:
            return cls(**d)
        except TypeError as exc:
            raise EdgeshrinkError(f"base candidate: {exc}") from None
