"""Reports: the Pareto rows must match a brute-force answer and Optuna's own best_trials."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from edgeshrink.reports import pareto_frame, trials_frame, write_report
from edgeshrink.reports.frame import pareto_mask

DISTS = {
    "width_mult": CategoricalDistribution([0.5, 0.75, 1.0]),
    "stage0_block": CategoricalDistribution(["ir_k3_e6", "ds_k3"]),
    "sparsity": FloatDistribution(0.0, 0.9),
    "precision": CategoricalDistribution(["fp32", "int8"]),
}
CHOICES = list(DISTS)


def _params(i: int) -> dict:
    return {
        "width_mult": [0.5, 0.75, 1.0][i % 3],
        "stage0_block": ["ir_k3_e6", "ds_k3"][i % 2],
        "sparsity": 0.1 * (i % 9),
        "precision": ["fp32", "int8"][i % 2],
    }


def _arch(i: int) -> str:
    return f"w1:ir_k3_e6_r{i}_s1_c16"


def _complete(i: int, acc: float, lat: float, slack: float = -1.0) -> optuna.trial.FrozenTrial:
    attrs = {
        "arch": _arch(i),
        "accuracy": acc,
        "latency_ms": lat,
        "latency_p90_ms": lat * 1.2,
        "size_bytes": 1000 + i,
        "params": 5000 + i,
        "nonzero_params": 4000 + i,
        "macs": 10**6 + i,
        "profile": "cpu",
        "artifact": f"/tmp/t{i}/model.onnx",
    }
    return create_trial(
        params=_params(i),
        distributions=DISTS,
        values=[acc, lat],
        user_attrs=attrs,
        constraints={"max_latency": slack},
    )


def _study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms"])
    return study


def _brute_force(study: optuna.Study) -> set[int]:
    """Independent reference: feasible complete trials no other such trial dominates."""
    pool = [
        t
        for t in study.trials
        if t.state == TrialState.COMPLETE and all(c <= 0 for c in t.constraints.values())
    ]

    def dominates(a, b) -> bool:
        (aa, al), (ba, bl) = a.values, b.values
        return aa >= ba and al <= bl and (aa > ba or al < bl)

    return {t.number for t in pool if not any(dominates(o, t) for o in pool)}


@pytest.fixture
def study() -> optuna.Study:
    s = _study()
    s.add_trial(_complete(0, 0.70, 2.0))  # front
    s.add_trial(_complete(1, 0.80, 4.0))  # front
    s.add_trial(_complete(2, 0.75, 5.0))  # dominated by 1
    s.add_trial(_complete(3, 0.95, 1.0, slack=1.0))  # would dominate all, but infeasible
    s.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"error": "export failed"}))
    s.add_trial(_complete(5, 0.80, 4.0))  # exact tie with 1: both stay
    s.add_trial(_complete(6, 0.90, 8.0))  # front
    s.add_trial(_complete(7, 0.70, 3.0))  # same accuracy as 0, slower: dominated
    s.add_trial(create_trial(state=TrialState.FAIL, system_attrs={"fail_reason": "OOM"}))
    s.add_trial(create_trial(state=TrialState.PRUNED, params=_params(9), distributions=DISTS))
    # One through ask/tell with set_constraint, the way the search loop records trials.
    trial = s.ask(DISTS)
    trial.set_user_attr("arch", _arch(10))
    trial.set_constraint("max_latency", -0.5)
    s.tell(trial, [0.85, 6.0])  # front
    s.ask()  # left RUNNING
    return s


def test_pareto_matches_brute_force_and_optuna(study: optuna.Study) -> None:
    frame = trials_frame(study)
    got = set(frame.loc[frame["pareto"], "trial"])
    assert got == {0, 1, 5, 6, 10}
    assert got == _brute_force(study)
    assert got == {t.number for t in study.best_trials}
    assert list(pareto_frame(study)["trial"]) == [0, 1, 5, 10, 6]  # latency ascending


def test_random_studies_agree_with_optuna() -> None:
    rng = random.Random(0)
    for _ in range(20):
        s = _study()
        for i in range(rng.randint(0, 30)):
            acc, lat = round(rng.random(), 1), round(rng.uniform(1, 5), 1)  # rounding forces ties
            s.add_trial(_complete(i, acc, lat, slack=rng.choice([-1.0, 0.0, 0.5])))
        frame = trials_frame(s)
        got = set(frame.loc[frame["pareto"], "trial"])
        assert got == _brute_force(s) == {t.number for t in s.best_trials}


def test_unconstrained_study_counts_every_complete_trial_as_feasible() -> None:
    s = _study()
    for i, (acc, lat) in enumerate([(0.5, 1.0), (0.6, 2.0), (0.55, 3.0)]):
        s.add_trial(create_trial(values=[acc, lat], user_attrs={"arch": _arch(i)}))
    frame = trials_frame(s)
    assert frame["feasible"].all()
    assert set(frame.loc[frame["pareto"], "trial"]) == {t.number for t in s.best_trials} == {0, 1}


def test_pareto_mask_edge_cases() -> None:
    assert pareto_mask([]).tolist() == []
    pts = [[0.9, 1.0], [0.9, 1.0], [float("nan"), 0.5], [0.95, 0.5]]
    assert pareto_mask(pts).tolist() == [False, False, False, True]
    assert pareto_mask(pts, eligible=[True, True, True, False]).tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_frame_columns_and_missing_values(study: optuna.Study) -> None:
    frame = trials_frame(study)
    head = ["trial", "state", "accuracy", "latency_ms", "latency_p90_ms", "size_bytes"]
    head += ["params", "nonzero_params", "macs", "feasible", "pareto", "arch", "family"]
    assert list(frame.columns) == [*head, *CHOICES, "error", "duration_s"]
    assert set(frame["family"]) == {"student"}  # trials from before families are students
    assert len(frame) == len(study.trials)
    by_trial = frame.set_index("trial")
    assert by_trial.loc[4, "state"] == "FAIL"
    assert by_trial.loc[4, "error"] == "export failed"
    assert by_trial.loc[8, "error"] == "OOM"
    assert pd.isna(by_trial.loc[4, "accuracy"]) and pd.isna(by_trial.loc[4, "size_bytes"])
    assert pd.isna(by_trial.loc[11, "duration_s"])  # still running
    assert not by_trial.loc[[3, 4, 9, 11], "feasible"].any()
    assert by_trial.loc[1, "size_bytes"] == 1001
    assert by_trial.loc[9, "width_mult"] == 0.5  # pruned trials keep their choices


def test_write_report_files(study: optuna.Study, tmp_path: Path) -> None:
    paths = write_report(study, tmp_path / "out")
    assert set(paths) == {"html", "trials", "pareto"}
    assert {p.name for p in paths.values()} == {"report.html", "trials.csv", "pareto.csv"}
    trials = pd.read_csv(paths["trials"])
    for col in ["accuracy", "latency_ms", "size_bytes", "state", *CHOICES]:
        assert col in trials.columns
    assert len(trials) == len(study.trials)
    pareto = pd.read_csv(paths["pareto"])
    assert list(pareto["trial"]) == [0, 1, 5, 10, 6]
    html = paths["html"].read_text()
    assert "plotly" in html
    for i in (0, 1, 2, 6):
        assert _arch(i) in html
    assert "5 Pareto-optimal" in html
    assert "&lt;NA&gt;" not in html  # missing sizes render as empty cells


def test_html_escapes_untrusted_text(tmp_path: Path) -> None:
    s = _study()
    s.add_trial(create_trial(values=[0.5, 1.0], user_attrs={"arch": "<evil-arch>"}))
    html = write_report(s, tmp_path)["html"].read_text()
    assert "<evil-arch>" not in html
    assert "&lt;evil-arch&gt;" in html


@pytest.mark.parametrize("with_failure", [False, True])
def test_empty_study_gives_a_report(tmp_path: Path, with_failure: bool) -> None:
    s = _study()
    if with_failure:
        s.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"error": "boom"}))
    paths = write_report(s, tmp_path)
    assert "No completed trials yet" in paths["html"].read_text()
    assert "accuracy" in pd.read_csv(paths["trials"]).columns
    assert pd.read_csv(paths["pareto"]).empty


def test_overwrite_leaves_no_temp_files(study: optuna.Study, tmp_path: Path) -> None:
    write_report(_study(), tmp_path)
    write_report(study, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.csv", "report.html", "trials.csv"]
    assert len(pd.read_csv(tmp_path / "trials.csv")) == len(study.trials)
