"""Turn the space's declared distributions into Optuna suggestions, with native types.

Floats stay floats (ordered, with steps), integers stay integers (kernels with their step), bools
stay bools (categorical ``[False, True]``); only nominal choices are categorical, so the
samplers can exploit order where it exists.
"""

from __future__ import annotations

from typing import Any

import optuna

from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.base_model.space import PREFIX, BaseSpace, active
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.families import AnyCandidate
from edgeshrink.spaces.space import (
    Categorical,
    Distribution,
    FloatRange,
    IntRange,
    SearchSpace,
)


def _suggest(trial: optuna.Trial, name: str, dist: Distribution) -> Any:
    if isinstance(dist, Categorical):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntRange):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step)
    if isinstance(dist, FloatRange):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step)
    raise TypeError(f"unsupported distribution for {name}: {dist!r}")  # pragma: no cover


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One value per declared parameter, in the space's order, with the parameter's own type."""
    return {name: _suggest(trial, name, dist) for name, dist in space.distributions.items()}


def suggest_base(trial: optuna.Trial, space: BaseSpace) -> BaseCandidate:
    """A base candidate; a parameter is suggested only where the ones before it make it matter
    (no group scales without ``per_group_scales``, no sparsity without a sparsity method), and a
    choice with one value is not suggested at all."""
    chosen: dict[str, Any] = {}
    for name, dist in space.distributions.items():
        if isinstance(dist, Categorical) and len(dist.choices) == 1:
            continue
        if active(space, chosen, name):
            chosen[name] = _suggest(trial, PREFIX + name, dist)
    return space.candidate_from_params({PREFIX + k: v for k, v in chosen.items()})


def suggest_any(trial: optuna.Trial, space: SearchSpace, base: BaseSpace | None,
                families: tuple[str, ...]) -> AnyCandidate:
    """The family first (a categorical only when there are two), then that family's choices."""
    family = (trial.suggest_categorical("family", list(families)) if len(families) > 1
              else families[0])
    if family == "base":
        if base is None:
            raise ValueError("family 'base' needs a base space (--model)")
        return suggest_base(trial, base)
    return suggest_candidate(trial, space)


def suggest_candidate(trial: optuna.Trial, space: SearchSpace) -> Candidate:
    """The candidate of a trial; ``space.candidate_from_params`` rebuilds it from storage."""
    return space.candidate_from_params(suggest_params(trial, space))
