"""Which objectives a profile can score, and a trial's values, from the registry in
:mod:`edgeshrink.core.metrics`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from edgeshrink.core.errors import EdgeshrinkError, ProfileError
from edgeshrink.core.metrics import OBJECTIVES, ObjectiveSpec, objectives_from_keys
from edgeshrink.hardware_profiles.registry import Profile, list_profiles, load_profile


def can_score(spec: ObjectiveSpec, profile: Profile) -> bool:
    return not spec.requires or bool(getattr(profile, spec.requires))


def profiles_with(spec: ObjectiveSpec) -> list[str]:
    """Built-in profiles that can score ``spec``."""
    out = []
    for name in list_profiles():
        try:
            if can_score(spec, load_profile(name)):
                out.append(name)
        except ProfileError:  # a broken built-in must not hide the real error
            continue
    return out


def check_available(names: Sequence[str], profile: Profile) -> None:
    """Refuse an objective the profile cannot score, e.g. energy on a profile with no figures."""
    for name in names:
        spec = OBJECTIVES[name]
        if not can_score(spec, profile):
            able = ", ".join(profiles_with(spec)) or "none"
            raise EdgeshrinkError(
                f"--objectives {name} needs a profile with {spec.needs}; profile "
                f"{profile.name!r} has none (profiles with {spec.needs}: {able})"
            )


def objective_values(names: Sequence[str], result: Any) -> tuple[float, ...]:
    """The values a trial returns: each objective's field of an ``EvaluationResult``."""
    values = []
    for name in names:
        value = getattr(result, OBJECTIVES[name].key)
        if value is None:
            raise EdgeshrinkError(f"objective {name!r} was not measured for this trial "
                                  f"({OBJECTIVES[name].key} is missing)")
        values.append(float(value))
    return tuple(values)


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The objective names a study was created with (:func:`objectives_from_keys`)."""
    return objectives_from_keys(study.study_name, study.metric_names, len(study.directions))
