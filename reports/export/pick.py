"""Which trial to ship: by number, within a latency budget, the knee of the front, a ladder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.reports.frame import feasible, front_trials, pareto_mask


@dataclass(frozen=True)
class Pick:
    trial: FrozenTrial
    reason: str


def _eligible(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials that meet the study's constraints: the only ones a front may hold."""
    return [t for t in study.trials if feasible(t)]


def _maximize(study: optuna.Study) -> list[bool]:
    return [d == StudyDirection.MAXIMIZE for d in study.directions]


def _loss_key(study: optuna.Study, t: FrozenTrial) -> tuple[float, ...]:
    """Every value turned into lower-is-better: accuracy first, then latency and the rest."""
    return tuple(-v if up else v for v, up in zip(t.values, _maximize(study), strict=True))


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible front over all the study's objectives (``Study.best_trials``), fastest first."""
    return sorted(front_trials(study), key=lambda t: (t.values[1], -t.values[0]))


def _describe(t: FrozenTrial) -> str:
    return f"trial {t.number} (accuracy {t.values[0]:.4f}, {t.values[1]:.4f} ms)"


def pick_by_number(study: optuna.Study, number: int) -> Pick:
    if isinstance(number, bool) or not isinstance(number, int):
        raise EdgeshrinkError(f"a trial number is a whole number, got {number!r}")
    by_number = {t.number: t for t in study.trials}
    if number not in by_number:
        last = max(by_number, default=-1)
        raise EdgeshrinkError(
            f"study {study.study_name!r} has no trial {number} (trials are 0..{last})"
        )
    t = by_number[number]
    if t.state != TrialState.COMPLETE:
        why = t.user_attrs.get("error") or t.system_attrs.get("fail_reason") or ""
        raise EdgeshrinkError(
            f"trial {number} is {t.state.name}, not COMPLETE; nothing to export"
            + (f" ({why})" if why else "") + "; pick a COMPLETE trial (see `edgeshrink report`)"
        )
    return Pick(t, f"trial {number}, chosen by number")


def pick_under_latency(study: optuna.Study, budget_ms: float) -> Pick:
    """Most accurate feasible trial within the budget; if none, the error names the closest."""
    if not budget_ms > 0:
        raise EdgeshrinkError(f"--max-latency must be positive milliseconds, got {budget_ms}")
    trials = _eligible(study)
    if not trials:
        raise EdgeshrinkError(f"study {study.study_name!r} has no completed feasible trials yet")
    fitting = [t for t in trials if t.values[1] <= budget_ms]
    if not fitting:
        # Closest over the budget: the fastest of the front.
        closest = min(trials, key=lambda t: (t.values[1], -t.values[0]))
        raise EdgeshrinkError(
            f"no trial meets {budget_ms:g} ms; the closest is {_describe(closest)}: "
            f"export it with --trial {closest.number} or raise --max-latency"
        )
    best = min(fitting, key=lambda t: _loss_key(study, t))
    return Pick(best, f"most accurate within {budget_ms:g} ms")


def knee_point(points: np.ndarray, maximize: list[bool] | tuple[bool, ...]) -> int:
    """Index of the knee of a front of any number of objectives.

    Each objective is scaled to a loss in [0, 1] over the front (0 = the front's best), so units
    do not matter. The reference hyperplane passes through the extreme points, the best point on
    each objective (ties to the lowest sum of the other losses); for two objectives it is the
    chord between the front's ends. Where the extremes are fewer than the objectives (the
    fastest point is also the most frugal), the plane is the least-squares one through them
    (minimum-norm ``w`` with ``w . e = 1``), which weighs the objectives they share equally. The
    knee is the point farthest beyond that plane towards the ideal corner. When no point lies
    beyond it (fewer than three points, or a concave front), the point closest to the ideal
    corner is taken instead, ties going to the more accurate (first objective).
    """
    pts = np.asarray(points, dtype=float).reshape(-1, len(maximize))
    loss = np.where(np.asarray(maximize, dtype=bool), -pts, pts)
    span = loss.max(axis=0) - loss.min(axis=0)
    scaled = np.where(span > 0, (loss - loss.min(axis=0)) / np.where(span > 0, span, 1.0), 0.0)
    rest = scaled.sum(axis=1, keepdims=True) - scaled
    extremes = np.unique(scaled[[int(np.lexsort((rest[:, j], scaled[:, j]))[0])
                                 for j in range(scaled.shape[1])]], axis=0)
    w = np.linalg.pinv(extremes) @ np.ones(len(extremes))
    norm = float(np.linalg.norm(w))
    if len(pts) >= 3 and norm > 0:
        rise = (1.0 - scaled @ w) / norm  # signed distance; positive = towards the ideal corner
        if rise.max() > 1e-12:
            return int(np.argmax(rise))
    return int(np.lexsort((scaled[:, 0], np.round(np.linalg.norm(scaled, axis=1), 12)))[0])


def knee_index(accuracy: np.ndarray, latency: np.ndarray) -> int:
    """Knee of an (accuracy, latency) front: the point farthest above the chord between its ends.

    With fewer than three points or no point above the chord, the point closest to the ideal
    corner (best accuracy, lowest latency); for two points that is a tie, which goes to the more
    accurate one. :func:`knee_point` with two objectives.
    """
    return knee_point(np.column_stack([accuracy, latency]), (True, False))


def pick_knee(study: optuna.Study) -> Pick:
    front = pareto_trials(study)
    if not front:
        raise EdgeshrinkError(f"study {study.study_name!r} has no completed feasible trials yet")
    i = knee_point(np.array([t.values for t in front]), _maximize(study))
    return Pick(front[i], f"knee of the {len(front)}-point front")


def ladder_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """K front points spread evenly over the front's latency range (log scale), fastest first."""
    if k < 1:
        raise EdgeshrinkError(f"--ladder must be at least 1, got {k}")
    front = pareto_trials(study)
    if not front:
        raise EdgeshrinkError(f"study {study.study_name!r} has no completed feasible trials yet")
    if len(study.directions) > 2:  # the selector picks by latency: drop what it never would
        keep = pareto_mask([t.values[:2] for t in front])
        front = [t for t, m in zip(front, keep, strict=True) if m]
    if len(front) <= k:
        return front
    log_lat = np.log([t.values[1] for t in front])
    targets = np.linspace(log_lat[0], log_lat[-1], k)
    chosen: list[int] = []
    for target in targets:
        order = np.argsort(np.abs(log_lat - target), kind="stable")
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return [front[i] for i in sorted(chosen)]
