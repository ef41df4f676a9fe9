"""The base family's search space: read from ``base_space.yaml`` and cut to the profile, then
turned into plain distributions with a ``base_`` prefix, so they never collide with a student's
parameters and a sampler sees them only in trials of the base family (conditional on it)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edgeshrink.core.vocabulary import IMPORTANCE_NAMES
from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.base_model.groups import DEFAULT_GROUPS
from edgeshrink.spaces.base_model.spec import ModelSpec
from edgeshrink.spaces.file_schema import validate
from edgeshrink.spaces.space import Categorical, Distribution, FloatRange, IntRange, SearchSpace

PREFIX = "base_"
# The profile's sparsity support -> the sparsity method a base candidate may add.
SPARSITY_FOR_SUPPORT = {"2:4": "semi_2_4", "unstructured": "global_magnitude"}


class _Float(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    step: float | None = None


class _Int(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: Annotated[int, Field(ge=0)]
    high: int


class BaseSpaceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel_ratio: _Float
    per_group_scales: list[bool]
    group_scale: _Float
    importance: list[str]
    sparsity: _Float
    finetune_epochs: _Int
    temperature: _Float
    alpha: _Float


def _float(f: _Float) -> FloatRange:
    return FloatRange(f.low, f.high, f.step)


@dataclass(frozen=True)
class BaseSpace:
    """Distributions of one study's base candidates (names without the prefix)."""

    model: ModelSpec
    input_resolution: int
    distributions: dict[str, Distribution]
    groups: int = DEFAULT_GROUPS

    def candidate_from_params(self, params: dict[str, Any]) -> BaseCandidate:
        """Rebuild the candidate of a base trial from its stored (prefixed) parameters."""
        p = {k[len(PREFIX):]: v for k, v in params.items() if k.startswith(PREFIX)}
        fixed = {name: dist.choices[0] for name, dist in self.distributions.items()
                 if isinstance(dist, Categorical) and len(dist.choices) == 1}
        p = {**fixed, **p}
        scales = tuple(float(p[f"group{g}_scale"]) for g in range(self.groups)
                       ) if p.get("per_group_scales") else ()
        stage = tuple(str(p[f"group{g}_precision"]) for g in range(self.groups)
                      if f"group{g}_precision" in p)
        return BaseCandidate(
            model=self.model, channel_ratio=float(p.get("channel_ratio", 0.0)),
            importance=str(p.get("importance", "l1")), group_scales=scales,
            pruning=str(p.get("pruning", "none")), sparsity=float(p.get("sparsity", 0.0))
            if p.get("pruning", "none") != "none" else 0.0,
            precision=str(p["precision"]), stage_precisions=stage,
            act_symmetric=bool(p.get("act_symmetric", False)), qat=bool(p.get("qat", False)),
            temperature=float(p.get("temperature", 4.0)), alpha=float(p.get("alpha", 0.7)),
            finetune_epochs=int(p.get("finetune_epochs", 1)),
            input_resolution=self.input_resolution, groups=self.groups)

    def reference(self) -> dict[str, Any]:
        """Parameters of the uncompressed model as fp32: the study's first, enqueued trial."""
        choices = self.distributions["precision"].choices
        fp32 = "fp32" if "fp32" in choices else choices[0]
        params = {"channel_ratio": 0.0, "precision": fp32, "finetune_epochs": 0,
                  "per_group_scales": False, "pruning": "none", "temperature": 4.0,
                  "alpha": 0.7, **{f"group{g}_precision": fp32 for g in range(self.groups)}}
        return {PREFIX + k: v for k, v in params.items() if k in self.distributions}


def load_base_space(model: ModelSpec, student: SearchSpace, sparsity_support: str,
                    groups: int = DEFAULT_GROUPS) -> BaseSpace:
    """The base space for ``model``, sharing the (profile-cut) precisions of ``student``."""
    text = resources.files("edgeshrink.spaces.base_model").joinpath("base_space.yaml").read_text()
    f = validate(BaseSpaceFile, yaml.safe_load(text), "base_space.yaml")
    d: dict[str, Distribution] = {
        "channel_ratio": _float(f.channel_ratio),
        "per_group_scales": Categorical(tuple(f.per_group_scales)),
        **{f"group{g}_scale": _float(f.group_scale) for g in range(groups)},
        "importance": Categorical(tuple(i for i in f.importance if i in IMPORTANCE_NAMES)),
        "finetune_epochs": IntRange(f.finetune_epochs.low, f.finetune_epochs.high),
        "temperature": _float(f.temperature),
        "alpha": _float(f.alpha),
    }
    method = SPARSITY_FOR_SUPPORT.get(sparsity_support)
    if method:
        d["pruning"] = Categorical(("none", method))
        d["sparsity"] = _float(f.sparsity)
    precisions = student.distributions["precision"]
    d["precision"] = precisions
    if "stage0_precision" in student.distributions:
        d.update({f"group{g}_precision": precisions for g in range(groups)})
    for flag in ("qat", "act_symmetric"):
        if flag in student.distributions:
            d[flag] = student.distributions[flag]
    return BaseSpace(model, student.input_resolution, d, groups)


def active(space: BaseSpace, chosen: dict[str, Any], name: str) -> bool:
    """Whether parameter ``name`` matters given the ones already chosen (conditional space)."""
    if name.startswith("group") and name.endswith("_scale"):
        return bool(chosen.get("per_group_scales"))
    if name == "sparsity":
        return chosen.get("pruning", "none") != "none"
    if name in ("importance", "per_group_scales"):
        return float(chosen.get("channel_ratio", 0.0)) > 0
    if name in ("qat", "act_symmetric"):
        used = {chosen.get("precision"), *(chosen.get(f"group{g}_precision")
                                           for g in range(space.groups))}
        return bool(used & {"int8", "int4"})
    return True
