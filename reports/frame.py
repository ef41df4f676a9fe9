"""One tidy row per trial, so the HTML page and both CSVs are derived from a single table.

Column order is part of the contract: the fixed head, then one column per sampled choice, then
the tail. ``energy_mj`` joins the head (after ``latency_p90_ms``) only in studies that record
energy, so host studies keep their columns. ``family`` ("base": the user's own model compressed;
"student": a searched network, also what trials of older studies are) closes the status columns;
in a study with base trials ``acc_vs_base`` and ``speedup_vs_base`` follow it, each trial against
the uncompressed user model (the COMPLETE trial marked ``reference == "base"``; NaN until that
trial completes). The study's ``family`` param is that column, not repeated as a choice. Missing
values stay NaN/<NA> (empty in CSV) so nobody mistakes a sentinel for data.

The study's objectives (its metric names, e.g. accuracy, latency_ms, energy_mj) travel with the
frame as ``frame.attrs["objectives"]``; ``pareto`` is the front over all of them, taken from
Optuna's ``Study.best_trials`` (:func:`front_trials`), the one definition of the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from numpy.typing import ArrayLike
from optuna.trial import FrozenTrial, TrialState, create_trial

from edgeshrink.core import metrics as registry

OBJECTIVES = tuple(registry.metric_keys(registry.DEFAULT_OBJECTIVES))  # a study's default values
ENERGY_COLUMN = registry.OBJECTIVES["energy"].key  # only in studies that record energy
METRIC_COLUMNS = (
    "accuracy",
    "latency_ms",
    "latency_p90_ms",
    "size_bytes",
    "params",
    "nonzero_params",
    "macs",
)
COUNT_COLUMNS = ("size_bytes", "params", "nonzero_params", "macs")
STATUS_COLUMNS = ("feasible", "pareto", "arch", "family")
HEAD_COLUMNS = ("trial", "state", *METRIC_COLUMNS, *STATUS_COLUMNS)
BASE_COLUMNS = ("acc_vs_base", "speedup_vs_base")  # only in studies with base trials
TAIL_COLUMNS = ("error", "duration_s")
_RESERVED = frozenset((*HEAD_COLUMNS, ENERGY_COLUMN, *BASE_COLUMNS, *TAIL_COLUMNS))
BASE, STUDENT = "base", "student"
FAMILY_PARAM = "family"  # sampled only when a study searches both families


def feasible(trial: FrozenTrial) -> bool:
    """COMPLETE with every constraint <= 0 (none recorded counts as met), as Optuna judges it."""
    return trial.state == TrialState.COMPLETE and all(
        c <= 0.0 for c in trial.constraints.values())


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's front, in trial order: the one definition, ``Study.best_trials``.

    Optuna keeps COMPLETE trials and, once any trial carries a constraint, only those whose every
    constraint is <= 0; a trial leaves the front when another is no worse on every objective and
    strictly better on one, in each objective's direction, so exact ties all stay. With no
    feasible trial it returns []; the filter here keeps that promise (infeasible trials never
    reach the front) should a later Optuna rank infeasible ones instead (optuna/optuna#6445).
    """
    return [t for t in study.best_trials if feasible(t)]


def front_numbers(study: optuna.Study) -> set[int]:
    return {t.number for t in front_trials(study)}


def pareto_mask(
    points: ArrayLike,
    maximize: Sequence[bool] = (True, False),
    eligible: ArrayLike | None = None,
) -> np.ndarray:
    """Rows that are eligible and on the front of ``points`` (one column per objective).

    For values that are not a study's trials (a re-scored latency, a subset of objectives): the
    eligible rows become trials of a scratch in-memory study whose ``best_trials`` decides, so
    arrays and studies share Optuna's definition. Rows with NaN never qualify.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, len(maximize))
    ok = np.ones(len(pts), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    rows = np.flatnonzero(ok & ~np.isnan(pts).any(axis=1))
    mask = np.zeros(len(pts), dtype=bool)
    if rows.size:
        scratch = _scratch_study(["maximize" if up else "minimize" for up in maximize])
        scratch.add_trials([create_trial(values=pts[i].tolist(), user_attrs={"row": int(i)})
                            for i in rows])
        mask[[t.user_attrs["row"] for t in scratch.best_trials]] = True
    return mask


def _scratch_study(directions: list[str]) -> optuna.Study:
    # Creating an in-memory study logs at INFO; a front of an array is not news to the user.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    try:
        return optuna.create_study(directions=directions)
    finally:
        optuna.logging.set_verbosity(verbosity)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns this frame has: ``METRIC_COLUMNS`` plus energy where recorded."""
    cols = list(frame.columns)
    return cols[cols.index("accuracy") : cols.index("feasible")]


def frame_objectives(frame: pd.DataFrame) -> tuple[str, ...]:
    """The columns the study optimizes, accuracy and latency first."""
    return tuple(frame.attrs.get("objectives", OBJECTIVES))


def choice_columns(frame: pd.DataFrame) -> list[str]:
    """The per-choice columns, i.e. everything between the status (and base) columns and
    ``error``."""
    cols = list(frame.columns)
    fixed = {"family", *BASE_COLUMNS}
    return [c for c in cols[cols.index("arch") + 1 : cols.index("error")] if c not in fixed]


def base_reference(frame: pd.DataFrame) -> int | None:
    """Number of the COMPLETE uncompressed-base trial the ``*_vs_base`` columns compare with."""
    number = frame.attrs.get("base_reference")
    return None if number is None else int(number)


def trial_family(trial: FrozenTrial) -> str:
    """"base" or "student"; trials of studies from before families count as students."""
    return str(trial.user_attrs.get("family") or trial.params.get(FAMILY_PARAM) or STUDENT)


def _is_reference(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE and trial.user_attrs.get("reference") == BASE


def _choice_name(param: str) -> str:
    # A param that shares a name with a fixed column must not overwrite it.
    return f"param_{param}" if param in _RESERVED else param


def _choices(trial: FrozenTrial) -> dict[str, Any]:
    return {_choice_name(k): v for k, v in trial.params.items() if k != FAMILY_PARAM}


def _row(trial: FrozenTrial, metric_names: Sequence[str],
         metrics: Sequence[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    complete = trial.state == TrialState.COMPLETE
    values = dict(zip(metric_names, trial.values or (), strict=False)) if complete else {}
    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name}
    for col in metrics:
        row[col] = values.get(col, attrs.get(col))
    row["feasible"] = feasible(trial)
    row["arch"] = attrs.get("arch")
    row["family"] = trial_family(trial)
    row.update(_choices(trial))
    row["error"] = attrs.get("error") or trial.system_attrs.get("fail_reason")
    row["duration_s"] = trial.duration.total_seconds() if trial.duration else None
    return row


def _numeric(series: pd.Series, integral: bool) -> pd.Series:
    out = pd.to_numeric(series, errors="coerce").astype(float)
    finite = out.dropna()
    if integral and np.isfinite(finite).all() and (finite % 1 == 0).all():
        return out.astype("Int64")  # counts print as 123, not 123.0; missing stays <NA>
    return out


def _metrics(trials: Sequence[FrozenTrial], objectives: Sequence[str]) -> tuple[str, ...]:
    if ENERGY_COLUMN in objectives or any(ENERGY_COLUMN in t.user_attrs for t in trials):
        at = METRIC_COLUMNS.index("latency_p90_ms") + 1
        return (*METRIC_COLUMNS[:at], ENERGY_COLUMN, *METRIC_COLUMNS[at:])
    return METRIC_COLUMNS


def study_objective_columns(study: optuna.Study) -> tuple[str, ...]:
    """The study's metric names (one per value), the default pair for an unnamed 2-value study."""
    return tuple(registry.metric_keys(registry.objectives_from_keys(
        study.study_name, study.metric_names, len(study.directions))))


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial with metrics, feasibility, Pareto membership and every sampled choice."""
    trials = study.get_trials(deepcopy=False)
    names = study_objective_columns(study)
    metrics = _metrics(trials, names)
    rows = [_row(t, names, metrics) for t in trials]
    choices = list(dict.fromkeys(k for t in trials for k in _choices(t)))
    reference = next((t.number for t in trials if _is_reference(t)), None)
    has_base = reference is not None or any(r["family"] == BASE for r in rows)
    base = BASE_COLUMNS if has_base else ()
    columns = ["trial", "state", *metrics, *STATUS_COLUMNS, *base, *choices, *TAIL_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    frame["trial"] = frame["trial"].astype("int64")
    for col in (*metrics, "duration_s"):
        frame[col] = _numeric(frame[col], integral=col in COUNT_COLUMNS)
    frame["feasible"] = frame["feasible"].astype(bool)
    # best_trials reads the storage again: a trial that finished in between is not a row yet,
    # so a row must also be feasible (hence complete) in this snapshot.
    frame["pareto"] = frame["trial"].isin(front_numbers(study)) & frame["feasible"]
    frame.attrs["objectives"] = names
    frame.attrs["base_reference"] = reference
    if base:
        _compare_to_base(frame, reference)
    return frame


def _compare_to_base(frame: pd.DataFrame, reference: int | None) -> None:
    """Fill ``acc_vs_base`` (accuracy minus the base's) and ``speedup_vs_base`` (base latency /
    this latency) on COMPLETE rows: what compressing the user's model cost and bought."""
    frame["acc_vs_base"] = frame["speedup_vs_base"] = np.nan
    ref = frame[frame["trial"] == reference]
    if ref.empty:
        return
    done = frame["state"] == "COMPLETE"
    acc, lat = float(ref["accuracy"].iloc[0]), float(ref["latency_ms"].iloc[0])
    frame.loc[done, "acc_vs_base"] = frame.loc[done, "accuracy"] - acc
    timed = done & (frame["latency_ms"] > 0)
    frame.loc[timed, "speedup_vs_base"] = lat / frame.loc[timed, "latency_ms"]


def pareto_frame(source: optuna.Study | pd.DataFrame) -> pd.DataFrame:
    """The Pareto-optimal rows, fastest first: the short list a person actually picks from."""
    frame = trials_frame(source) if isinstance(source, optuna.Study) else source
    front = frame[frame["pareto"].astype(bool)]
    return front.sort_values(["latency_ms", "trial"], kind="stable").reset_index(drop=True)
