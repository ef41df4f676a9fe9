"""One front everywhere: the report's rows, the export's picks, the dashboard's statuses and
``pareto_mask`` must hold exactly the feasible, non-dominated completed trials, as
``Study.best_trials`` does, for 2 to 4 objectives recorded the way the search records them."""

from __future__ import annotations

import logging

import numpy as np
import optuna
import pytest

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.reports.export import ladder_trials, pareto_trials, pick_knee
from edgeshrink.reports.frame import front_numbers, pareto_mask, trials_frame

NAMES = ("accuracy", "latency_ms", "energy_mj", "size_bytes")
DIRECTIONS = ("maximize", "minimize", "minimize", "minimize")
# number: (accuracy, latency_ms, energy_mj, size_bytes), None: the trial fails or is pruned
POINTS = {
    0: (0.90, 1.0, 5.0, 900.0),  # front
    1: (0.80, 2.0, 1.0, 800.0),  # slower and less accurate than 0, but the most frugal: front
    2: (0.70, 3.0, 6.0, 950.0),  # dominated by 0 on every objective
    3: (0.99, 0.5, 0.5, 100.0),  # would dominate all, but breaks --max-latency: infeasible
    4: (0.85, 1.0, 4.0, 850.0),  # as fast as 0, less accurate, less energy: front
    5: (0.90, 1.0, 5.0, 900.0),  # exact tie with 0: both stay
    6: None,  # FAIL
    7: None,  # PRUNED
    8: (0.90, 1.0, 5.0, 901.0),  # ties 0 on 2-3 objectives; beaten on size: dominated in 4
    9: (0.95, 0.9, 0.4, 90.0),  # would dominate all too, but breaks --min-accuracy slack
}
INFEASIBLE = {3: ("max_latency_ms", 0.2), 9: ("min_accuracy", 1e-9)}


def _study(k: int) -> optuna.Study:
    """The search's way: ask, set_constraint on every trial, tell (FAIL/PRUNED as it does)."""
    study = optuna.create_study(directions=list(DIRECTIONS[:k]))
    study.set_metric_names(list(NAMES[:k]))
    for n, values in POINTS.items():
        trial = study.ask()
        trial.suggest_float("sparsity", 0.0, 1.0)
        name, slack = INFEASIBLE.get(n, ("max_latency_ms", -0.5))
        trial.set_constraint(name, slack)
        if values is None:
            state = optuna.trial.TrialState.FAIL if n == 6 else optuna.trial.TrialState.PRUNED
            study.tell(trial, state=state)
        else:
            trial.set_user_attr("latency_ms", values[1])
            study.tell(trial, list(values[:k]))
    return study


def _brute_force(study: optuna.Study) -> set[int]:
    sign = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0
                     for d in study.directions])
    pool = {t.number: sign * np.array(t.values) for t in study.trials
            if t.state.name == "COMPLETE" and all(c <= 0 for c in t.constraints.values())}
    return {n for n, a in pool.items()
            if not any((b <= a).all() and (b < a).any() for b in pool.values())}


EXPECTED = {2: {0, 5, 8}, 3: {0, 1, 4, 5, 8}, 4: {0, 1, 4, 5}}  # 8 ties 0 below 4


@pytest.mark.parametrize("k", [2, 3, 4])
def test_every_front_is_feasible_and_non_dominated(k):
    study = _study(k)
    expected = EXPECTED[k]
    assert _brute_force(study) == expected == front_numbers(study)
    assert not expected & ({2, 3, 6, 7, 9} | ({8} if k == 4 else set()))
    frame = trials_frame(study)
    assert set(frame.loc[frame["pareto"], "trial"]) == expected
    assert set(frame.loc[~frame["feasible"] & (frame["state"] == "COMPLETE"), "trial"]) == {3, 9}
    assert {t.number for t in pareto_trials(study)} == expected
    assert pick_knee(study).trial.number in expected
    assert {t.number for t in ladder_trials(study, 5)} <= expected
    # The same front from plain arrays (NaN rows of FAIL/PRUNED trials never qualify).
    maximize = [d == "maximize" for d in DIRECTIONS[:k]]
    mask = pareto_mask(frame[list(NAMES[:k])].to_numpy(dtype=float), maximize,
                       frame["feasible"].to_numpy())
    assert set(frame.loc[mask, "trial"]) == expected
    # Without the feasibility filter the infeasible trials take the front over.
    loose = pareto_mask(frame[list(NAMES[:k])].to_numpy(dtype=float), maximize)
    assert {3, 9} & set(frame.loc[loose, "trial"])


def test_the_dashboard_marks_only_the_front():
    pytest.importorskip("dash")
    from edgeshrink.reports.dashboard.data import dashboard_frame, trial_status

    study = _study(3)
    frame = dashboard_frame(study)
    status = dict(zip(frame["trial"], trial_status(frame, None, None), strict=True))
    assert {n for n, s in status.items() if s == "front"} == EXPECTED[3]
    assert status[2] == "dominated" and status[3] == status[9] == "infeasible"
    assert status[6] is None and status[7] is None


def test_pareto_mask_is_quiet_and_matches_optuna_on_random_points(capfd):
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.INFO)
    try:
        rng = np.random.default_rng(3)
        pts = rng.integers(0, 6, size=(60, 3)).astype(float)  # many ties
        mask = pareto_mask(pts, (True, False, False))
        assert optuna.logging.get_verbosity() == logging.INFO
    finally:
        optuna.logging.set_verbosity(before)
    assert "A new study created" not in capfd.readouterr().err
    loss = pts * [-1, 1, 1]
    brute = [not any((o <= p).all() and (o < p).any() for o in loss) for p in loss]
    assert mask.tolist() == brute
    assert pareto_mask(np.empty((0, 2))).tolist() == []


def test_no_feasible_trial_means_no_front_even_if_optuna_ranked_infeasible_ones(monkeypatch):
    study = optuna.create_study(directions=["maximize", "minimize"])
    for n in range(3):
        trial = study.ask()
        trial.set_constraint("max_latency_ms", 0.1 * (n + 1))  # all infeasible
        study.tell(trial, [0.5 + 0.1 * n, 1.0 + n])
    assert study.best_trials == []  # Optuna 5: documented, nothing feasible, nothing best
    # A later Optuna that returned the least-violating infeasible trials (optuna/optuna#6445)
    # must not put them on the front.
    monkeypatch.setattr(optuna.Study, "best_trials",
                        property(lambda s: s.get_trials(deepcopy=False)))
    frame = trials_frame(study)
    assert not frame["pareto"].any() and front_numbers(study) == set()
    assert pareto_trials(study) == []
    with pytest.raises(EdgeshrinkError, match="no completed feasible trials"):
        pick_knee(study)
