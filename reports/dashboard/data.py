"""The dashboard's data: the study as a table, what qualifies under the sliders, the counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from edgeshrink.reports.frame import (
    BASE_COLUMNS,
    ENERGY_COLUMN,
    OBJECTIVES,
    base_reference,
    frame_objectives,
    trials_frame,
)
from edgeshrink.reports.plotting import families, family_counts
from edgeshrink.search.options import DASHBOARD_REFRESH_S
from edgeshrink.search.study import load_existing_study

REFRESH_S = DASHBOARD_REFRESH_S
MAX_COMPARE = 3
METRICS = (
    "accuracy", "latency_ms", "latency_p90_ms", ENERGY_COLUMN, "size_bytes", "size_gzip_bytes",
    "params", "nonzero_params", "macs",
)  # the energy column exists only in studies that record energy: see _metrics
LABELS = {
    "accuracy": "validation accuracy",
    "latency_ms": "latency (ms, median)",
    "latency_p90_ms": "latency (ms, p90)",
    ENERGY_COLUMN: "energy (mJ)",
    "size_bytes": "size (bytes)",
    "size_gzip_bytes": "size gzipped (bytes)",
    "params": "parameters",
    "nonzero_params": "non-zero parameters",
    "macs": "MACs",
    "acc_vs_base": "accuracy vs base model",
    "speedup_vs_base": "speed-up vs base model",
}
X_AXES = ("latency_ms", "latency_p90_ms", ENERGY_COLUMN, "size_bytes", "size_gzip_bytes",
          "macs")
EMPTY_TEXT = "No completed trials yet. This page re-reads the study every few seconds."
# Status of a completed trial, as shown in the table and used to grey rows.
FRONT, DOMINATED, INFEASIBLE, FILTERED = "front", "dominated", "infeasible", "filtered out"

class StudySource:
    """One open study; each read goes back to the storage, so new trials show up."""

    def __init__(self, study_name: str, run_dir: Path, storage: str | None):
        self.run_dir = run_dir
        self.study = load_existing_study(study_name, run_dir, storage)

    def frame(self) -> pd.DataFrame:
        return dashboard_frame(self.study)

    def trial(self, number: int) -> FrozenTrial | None:
        return next((t for t in self.study.get_trials(deepcopy=False) if t.number == number),
                    None)


def _reason(trial: FrozenTrial | None, error: Any) -> str | None:
    if trial is None:
        return None
    if trial.state.name == "FAIL":
        return str(error) if error else "failed (no error recorded)"
    if trial.state.name == "PRUNED":
        return "pruned"
    if trial.state.name == "COMPLETE":
        broken = [f"{name} violated by {value:.4g}" for name, value in trial.constraints.items()
                  if value > 0 and name != "fits_memory"]
        if trial.constraints.get("fits_memory", 0) > 0:
            broken += trial.user_attrs.get("memory_problems") or ["does not fit device memory"]
        return "; ".join(broken) or None
    return None


def dashboard_frame(study: optuna.Study) -> pd.DataFrame:
    """``trials_frame`` plus what the dashboard also shows: gzipped size and why a trial is out."""
    frame = trials_frame(study)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    gzip = [trials[n].user_attrs.get("size_gzip_bytes") for n in frame["trial"]]
    frame.insert(frame.columns.get_loc("size_bytes") + 1, "size_gzip_bytes",
                 pd.array([None if v is None else int(v) for v in gzip], dtype="Int64"))
    frame["reason"] = [_reason(trials.get(n), e) for n, e in zip(frame["trial"], frame["error"],
                                                                   strict=True)]
    return frame


def present_metrics(frame: pd.DataFrame, names: tuple[str, ...] = METRICS) -> list[str]:
    """The ``names`` this frame has a column for (energy only where the study records it)."""
    return [m for m in names if m in frame.columns]


def to_store(frame: pd.DataFrame) -> dict[str, Any]:
    """JSON-safe form for a dcc.Store (NaN and <NA> become null, numpy types plain numbers)."""
    return {"columns": list(frame.columns), "objectives": list(frame_objectives(frame)),
            "base_reference": base_reference(frame),
            "rows": json.loads(frame.to_json(orient="records", double_precision=15))}


def from_store(data: dict[str, Any] | None) -> pd.DataFrame:
    if not data:
        plain = [m for m in METRICS if m != ENERGY_COLUMN]
        return pd.DataFrame(columns=["trial", "state", *plain, "feasible", "pareto", "arch",
                                     "family", "error", "duration_s", "reason"])
    frame = pd.DataFrame(data["rows"], columns=data["columns"])
    frame.attrs["objectives"] = tuple(data.get("objectives", OBJECTIVES))
    frame.attrs["base_reference"] = data.get("base_reference")
    numeric = [c for c in BASE_COLUMNS if c in frame.columns]
    for col in (*present_metrics(frame), *numeric, "duration_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["trial"] = frame["trial"].astype(int)
    for col in ("feasible", "pareto"):
        frame[col] = frame[col].fillna(False).astype(bool)
    return frame


def in_families(frame: pd.DataFrame, families: list[str] | None) -> pd.DataFrame:
    """The rows of the chosen model families (None: all); the front stays the study's."""
    if families is None or "family" not in frame.columns:
        return frame
    return frame[frame["family"].isin(families)]


def family_filter_style(frame: pd.DataFrame) -> dict[str, str]:
    """The family checklist is shown only when the study holds more than one family."""
    return {} if len(families(frame)) > 1 else {"display": "none"}


def qualifies(frame: pd.DataFrame, latency_budget: float | None,
              min_accuracy: float | None) -> np.ndarray:
    """Completed trials inside the filters (infeasible ones included: they are marked apart)."""
    ok = (frame["state"] == "COMPLETE").to_numpy()
    if latency_budget is not None:
        ok = ok & (frame["latency_ms"] <= latency_budget + 1e-12).to_numpy()
    if min_accuracy is not None:
        ok = ok & (frame["accuracy"] >= min_accuracy - 1e-12).to_numpy()
    return ok


def trial_status(frame: pd.DataFrame, latency_budget: float | None,
                 min_accuracy: float | None) -> pd.Series:
    """front / dominated / infeasible / filtered out, per row (None if not completed).

    The front is not recomputed under the filters: a trial that passes both filters can only be
    dominated by one that is at least as fast and as accurate (and no worse on any further
    objective), which passes them too, so the study's front cut by the filters is exactly the
    front of what is left.
    """
    inside = qualifies(frame, latency_budget, min_accuracy)
    done = (frame["state"] == "COMPLETE").to_numpy()
    status = np.where(frame["pareto"], FRONT, np.where(frame["feasible"], DOMINATED, INFEASIBLE))
    status = np.where(inside, status, FILTERED)
    return pd.Series(np.where(done, status, None), index=frame.index, dtype=object)


def counts_text(frame: pd.DataFrame, latency_budget: float | None = None,
                min_accuracy: float | None = None) -> str:
    state = frame["state"]
    inside = int(qualifies(frame, latency_budget, min_accuracy).sum())
    running = int((state == "RUNNING").sum())
    per_family = family_counts(frame)
    return (
        f"{len(frame)} trial{'' if len(frame) == 1 else 's'}"
        f"{f' ({per_family})' if per_family else ''}: "
        f"{int((state == 'COMPLETE').sum())} complete, "
        f"{int(frame['feasible'].sum())} feasible, {int((state == 'FAIL').sum())} failed, "
        f"{running} running, {int(frame['pareto'].sum())} on the front; "
        f"{inside} inside the filters"
    )
