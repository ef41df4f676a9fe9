"""One tidy row per trial, so the HTML page and both CSVs are derived from a single table.

Column order is part of the contract: the fixed head, then one column per sampled choice, then
the tail. Missing values stay NaN/<NA> (empty in CSV) so nobody mistakes a sentinel for data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from numpy.typing import ArrayLike
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

OBJECTIVES = ("accuracy", "latency_ms")  # the study's values, in this order by default
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
HEAD_COLUMNS = ("trial", "state", *METRIC_COLUMNS, "feasible", "pareto", "arch")
TAIL_COLUMNS = ("error", "duration_s")
_RESERVED = frozenset(HEAD_COLUMNS + TAIL_COLUMNS)


def pareto_mask(
    points: ArrayLike,
    maximize: Sequence[bool] = (True, False),
    eligible: ArrayLike | None = None,
) -> np.ndarray:
    """Rows that are eligible and not dominated by another eligible row.

    Dominated means another row is no worse on every objective and strictly better on one, so
    exact ties all stay on the front (as in ``Study.best_trials``). Rows with NaN never qualify.
    O(n^2) time but O(n) memory, which is plenty for a study's trial count.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, len(maximize))
    ok = np.ones(len(pts), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    ok = ok & ~np.isnan(pts).any(axis=1)
    loss = np.where(np.asarray(maximize, dtype=bool), -pts, pts)[ok]  # lower is better
    dominated = np.zeros(len(loss), dtype=bool)
    for i, row in enumerate(loss):
        dominated[i] = np.any(np.all(loss <= row, axis=1) & np.any(loss < row, axis=1))
    mask = np.zeros(len(pts), dtype=bool)
    mask[np.flatnonzero(ok)[~dominated]] = True
    return mask


def choice_columns(frame: pd.DataFrame) -> list[str]:
    """The per-choice columns, i.e. everything between ``arch`` and ``error``."""
    cols = list(frame.columns)
    return cols[cols.index("arch") + 1 : cols.index("error")]


def _choice_name(param: str) -> str:
    # A param that shares a name with a fixed column must not overwrite it.
    return f"param_{param}" if param in _RESERVED else param


def _row(trial: FrozenTrial, metric_names: Sequence[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    complete = trial.state == TrialState.COMPLETE
    values = dict(zip(metric_names, trial.values or (), strict=False)) if complete else {}
    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name}
    for col in METRIC_COLUMNS:
        row[col] = values.get(col, attrs.get(col))
    row["feasible"] = complete and all(c <= 0.0 for c in trial.constraints.values())
    row["arch"] = attrs.get("arch")
    row.update({_choice_name(k): v for k, v in trial.params.items()})
    row["error"] = attrs.get("error") or trial.system_attrs.get("fail_reason")
    row["duration_s"] = trial.duration.total_seconds() if trial.duration else None
    return row


def _numeric(series: pd.Series, integral: bool) -> pd.Series:
    out = pd.to_numeric(series, errors="coerce").astype(float)
    finite = out.dropna()
    if integral and np.isfinite(finite).all() and (finite % 1 == 0).all():
        return out.astype("Int64")  # counts print as 123, not 123.0; missing stays <NA>
    return out


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial with metrics, feasibility, Pareto membership and every sampled choice."""
    trials = study.get_trials(deepcopy=False)
    names = list(study.metric_names or OBJECTIVES)
    rows = [_row(t, names) for t in trials]
    choices = list(dict.fromkeys(_choice_name(k) for t in trials for k in t.params))
    columns = [*HEAD_COLUMNS, *choices, *TAIL_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    frame["trial"] = frame["trial"].astype("int64")
    for col in (*METRIC_COLUMNS, "duration_s"):
        frame[col] = _numeric(frame[col], integral=col in COUNT_COLUMNS)
    frame["feasible"] = frame["feasible"].astype(bool)
    maximize_by_name = {
        n: d == StudyDirection.MAXIMIZE for n, d in zip(names, study.directions, strict=False)
    }
    maximize = [maximize_by_name.get(n, n == "accuracy") for n in OBJECTIVES]
    frame["pareto"] = pareto_mask(
        frame[list(OBJECTIVES)].to_numpy(dtype=float), maximize, frame["feasible"].to_numpy()
    )
    return frame


def pareto_frame(source: optuna.Study | pd.DataFrame) -> pd.DataFrame:
    """The Pareto-optimal rows, fastest first: the short list a person actually picks from."""
    frame = trials_frame(source) if isinstance(source, optuna.Study) else source
    front = frame[frame["pareto"].astype(bool)]
    return front.sort_values(["latency_ms", "trial"], kind="stable").reset_index(drop=True)
