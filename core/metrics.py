"""The metric registry every layer reads: what a search may optimize (``--objectives``), each
metric's direction, key, unit and label.

Accuracy and latency are always objectives: they are the axes of every plot, the latency budget
of ``export --max-latency`` and the runtime ladder. Energy and file size may be added. Whatever
order the user writes, the study's values are stored in the registry's order (accuracy, latency,
energy, size), so ``values[0]`` is always accuracy and ``values[1]`` always latency, and
``accuracy,latency,energy`` and ``energy,latency,accuracy`` name the same study.

The study records its objectives as Optuna metric names (the keys below, which are also the
trial user attrs and report columns), so reports and resumes read them back from storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgeshrink.core.errors import EdgeshrinkError


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str  # as written in --objectives
    direction: str  # Optuna's "maximize" | "minimize"
    key: str  # trial user attr, EvaluationResult field and report column
    unit: str
    label: str  # axis title
    requires: str = ""  # a Profile property that must be true to score it ("" = any profile)
    needs: str = ""  # what a profile must have, for the error when it cannot

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "accuracy": ObjectiveSpec("accuracy", "maximize", "accuracy", "", "validation accuracy"),
    "latency": ObjectiveSpec("latency", "minimize", "latency_ms", "ms", "latency (ms)"),
    "energy": ObjectiveSpec("energy", "minimize", "energy_mj", "mJ", "energy (mJ)",
                            "has_energy", "energy figures"),
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


def directions(names: Sequence[str]) -> list[str]:
    return [OBJECTIVES[n].direction for n in names]


def metric_keys(names: Sequence[str]) -> list[str]:
    """The study's metric names: one report column per objective."""
    return [OBJECTIVES[n].key for n in names]


def spec_by_key(key: str) -> ObjectiveSpec | None:
    return _BY_KEY.get(key)


def objectives_from_keys(study_name: str, keys: Sequence[str] | None,
                         n_directions: int) -> tuple[str, ...]:
    """The objective names a study was created with, read back from its metric names.

    A study without metric names (made by hand or by an old version) with two directions is the
    default accuracy, latency study.
    """
    if keys is None:
        if n_directions == len(DEFAULT_OBJECTIVES):
            return DEFAULT_OBJECTIVES
        raise EdgeshrinkError(f"study {study_name!r} has {n_directions} "
                              "objectives but no metric names; it was not made by edgeshrink")
    unknown = [k for k in keys if k not in _BY_KEY]
    if unknown:
        raise EdgeshrinkError(f"study {study_name!r} has objective {unknown[0]!r}, which "
                              f"edgeshrink does not know (it knows {', '.join(_BY_KEY)})")
    return tuple(_BY_KEY[k].name for k in keys)
