"""Turn the space's declared distributions into Optuna suggestions, with native types.

Floats stay floats (ordered, with steps), integers stay integers (kernels with their step), bools
stay bools (categorical ``[False, True]``); only nominal choices are categorical, so the
samplers can exploit order where it exists.
"""

from __future__ import annotations

from typing import Any

import optuna

from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.space import Categorical, FloatRange, IntRange, SearchSpace


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One value per declared parameter, in the space's order, with the parameter's own type."""
    params: dict[str, Any] = {}
    for name, dist in space.distributions.items():
        if isinstance(dist, Categorical):
            params[name] = trial.suggest_categorical(name, list(dist.choices))
        elif isinstance(dist, IntRange):
            params[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step)
        elif isinstance(dist, FloatRange):
            params[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step)
        else:  # pragma: no cover - the space parser only builds the three kinds above
            raise TypeError(f"unsupported distribution for {name}: {dist!r}")
    return params


def suggest_candidate(trial: optuna.Trial, space: SearchSpace) -> Candidate:
    """The candidate of a trial; ``space.candidate_from_params`` rebuilds it from storage."""
    return space.candidate_from_params(suggest_params(trial, space))
