"""What a search optimizes (``--objectives``): a registry of objective name -> direction and key.

Accuracy and latency are always objectives: they are the axes of every plot, the latency budget
of ``export --max-latency`` and the runtime ladder. Energy and file size may be added. Whatever
order the user writes, the study's values are stored in the registry's order (accuracy, latency,
energy, size), so ``values[0]`` is always accuracy and ``values[1]`` always latency, and
``accuracy,latency,energy`` and ``energy,latency,accuracy`` name the same study.

The study records its objectives as Optuna metric names (the keys below, which are also the
trial user attrs and report columns), so reports and resumes read them back from storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from edgeshrink.hardware_profiles.registry import Profile, list_profiles, load_profile
from edgeshrink.spaces.errors import EdgeshrinkError


def _always(profile: Profile) -> bool:
    return True


def _has_energy(profile: Profile) -> bool:
    return profile.has_energy


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str  # as written in --objectives
    direction: str  # Optuna's "maximize" | "minimize"
    key: str  # trial user attr, EvaluationResult field and report column
    unit: str
    label: str  # axis title
    available: Callable[[Profile], bool] = _always  # can the profile score it?
    needs: str = ""  # what a profile must have, for the error when it cannot

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "accuracy": ObjectiveSpec("accuracy", "maximize", "accuracy", "", "validation accuracy"),
    "latency": ObjectiveSpec("latency", "minimize", "latency_ms", "ms", "latency (ms)"),
    "energy": ObjectiveSpec("energy", "minimize", "energy_mj", "mJ", "energy (mJ)",
                            _has_energy, "energy figures"),
    "size": ObjectiveSpec("size", "minimize", "size_bytes", "bytes", "size (bytes)"),
}
REQUIRED = ("accuracy", "latency")  # the axes of the front
DEFAULT_OBJECTIVES = REQUIRED
_BY_KEY = {spec.key: spec for spec in OBJECTIVES.values()}


def parse_objectives(names: str | Iterable[str]) -> tuple[str, ...]:
    """Validated objective names in registry order; a comma list or a sequence of names."""
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [str(n).strip().lower() for n in items]
    valid = ", ".join(OBJECTIVES)
    unknown = [n for n in items if n not in OBJECTIVES]
    if unknown:
        raise EdgeshrinkError(f"--objectives: unknown objective {unknown[0]!r}; "
                              f"choose from {valid}")
    twice = sorted({n for n in items if items.count(n) > 1})
    if twice:
        raise EdgeshrinkError(f"--objectives: {twice[0]!r} is given twice; list each of "
                              f"{valid} at most once")
    missing = [n for n in REQUIRED if n not in items]
    if missing:
        raise EdgeshrinkError(f"--objectives must include {' and '.join(REQUIRED)} (the axes of "
                              f"the front), missing {', '.join(missing)}; valid names: {valid}")
    return tuple(n for n in OBJECTIVES if n in items)


def profiles_with(spec: ObjectiveSpec) -> list[str]:
    """Built-in profiles that can score ``spec``."""
    out = []
    for name in list_profiles():
        try:
            if spec.available(load_profile(name)):
                out.append(name)
        except ValueError:  # a broken built-in must not hide the real error
            continue
    return out


def check_available(names: Sequence[str], profile: Profile) -> None:
    """Refuse an objective the profile cannot score, e.g. energy on a profile with no figures."""
    for name in names:
        spec = OBJECTIVES[name]
        if not spec.available(profile):
            able = ", ".join(profiles_with(spec)) or "none"
            raise EdgeshrinkError(
                f"--objectives {name} needs a profile with {spec.needs}; profile "
                f"{profile.name!r} has none (profiles with {spec.needs}: {able})"
            )


def directions(names: Sequence[str]) -> list[str]:
    return [OBJECTIVES[n].direction for n in names]


def metric_keys(names: Sequence[str]) -> list[str]:
    """The study's metric names: one report column per objective."""
    return [OBJECTIVES[n].key for n in names]


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
    """The objective names a study was created with, read back from its metric names.

    A study without metric names (made by hand or by an old version) with two directions is the
    default accuracy, latency study.
    """
    keys = study.metric_names
    if keys is None:
        if len(study.directions) == len(DEFAULT_OBJECTIVES):
            return DEFAULT_OBJECTIVES
        raise EdgeshrinkError(f"study {study.study_name!r} has {len(study.directions)} "
                              "objectives but no metric names; it was not made by edgeshrink")
    unknown = [k for k in keys if k not in _BY_KEY]
    if unknown:
        raise EdgeshrinkError(f"study {study.study_name!r} has objective {unknown[0]!r}, which "
                              f"edgeshrink does not know (it knows {', '.join(_BY_KEY)})")
    return tuple(_BY_KEY[k].name for k in keys)


def spec_by_key(key: str) -> ObjectiveSpec | None:
    return _BY_KEY.get(key)
