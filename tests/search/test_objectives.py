"""--objectives: validation, the N-objective front, picking on it, and a 3-objective search."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState, create_trial

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.metrics import metric_keys, parse_objectives
from edgeshrink.hardware_profiles import load_profile
from edgeshrink.reports import dashboard as db
from edgeshrink.reports import export as ex
from edgeshrink.reports.frame import pareto_mask, trials_frame
from edgeshrink.reports.writer import search_and_report, write_report
from edgeshrink.search.cli import main
from edgeshrink.search.objective_values import check_available, study_objectives
from edgeshrink.search.runner import SearchOptions
from edgeshrink.search.study import create_or_resume_study, open_storage
from edgeshrink.search.workers import shared_options

THREE = ("accuracy", "latency", "energy")

# ---------------------------------------------------------------- names


def test_names_are_validated_and_put_in_registry_order():
    assert parse_objectives("accuracy,latency") == ("accuracy", "latency")
    assert parse_objectives(" Energy, latency ,accuracy") == THREE
    assert parse_objectives(["size", "latency", "accuracy", "energy"]) == (*THREE, "size")
    assert metric_keys(THREE) == ["accuracy", "latency_ms", "energy_mj"]


@pytest.mark.parametrize("text,message", [
    ("accuracy,speed", "unknown objective 'speed'; choose from accuracy, latency, energy, size"),
    ("accuracy,latency,latency", "'latency' is given twice"),
    ("accuracy,energy", "must include accuracy and latency (the axes of the front), missing "
                        "latency"),
    ("accuracy,,latency", "unknown objective ''"),
])
def test_bad_names_are_one_line_errors(text, message):
    with pytest.raises(EdgeshrinkError) as err:
        parse_objectives(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_energy_needs_a_profile_with_energy_figures():
    check_available(THREE, load_profile("coral-edge-tpu"))
    check_available(("accuracy", "latency", "size"), load_profile("host"))
    with pytest.raises(EdgeshrinkError, match=r"profile 'raspberry-pi-4' has none \(profiles "
                                              r"with energy figures: coral-edge-tpu\)"):
        check_available(THREE, load_profile("raspberry-pi-4"))


def test_workers_get_the_objectives_of_the_search():
    shared = json.loads(json.dumps(shared_options(SearchOptions(objectives=("energy", "latency",
                                                                            "accuracy")))))
    assert parse_objectives(SearchOptions(**shared).objectives) == THREE


# ---------------------------------------------------------------- study creation and resume


def test_resume_refuses_another_objective_list(tmp_path):
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = create_or_resume_study("s", tmp_path, None, sampler, THREE)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert study.metric_names == ["accuracy", "latency_ms", "energy_mj"]
    assert study_objectives(create_or_resume_study("s", tmp_path, None, sampler, THREE)) == THREE
    with pytest.raises(EdgeshrinkError) as err:
        create_or_resume_study("s", tmp_path, None, sampler, ("accuracy", "latency"))
    assert str(err.value) == (
        "study 's' was created with --objectives accuracy,latency,energy, not accuracy,latency; "
        "its directions are fixed, so resume it with --objectives accuracy,latency,energy or "
        "choose another --study name")
    # A study made without metric names by an older version is the default pair.
    optuna.create_study(study_name="old", storage=open_storage(tmp_path, None, create=True),
                        directions=["maximize", "minimize"])
    old = create_or_resume_study("old", tmp_path, None, sampler)
    assert study_objectives(old) == ("accuracy", "latency")
    with pytest.raises(EdgeshrinkError, match="created with --objectives accuracy,latency, "):
        create_or_resume_study("old", tmp_path, None, sampler, THREE)


# ---------------------------------------------------------------- the front over 3 objectives

# number: (accuracy, latency_ms, energy_mj, constraint slack)
POINTS = {
    0: (0.90, 1.0, 5.0, -1.0),  # front
    1: (0.80, 2.0, 1.0, -1.0),  # beaten by 0 on accuracy and latency, but the most frugal: front
    2: (0.70, 3.0, 6.0, -1.0),  # dominated by 0 on all three
    3: (0.99, 0.5, 0.5, 0.2),  # would dominate all, but infeasible
    4: (0.85, 1.0, 4.0, -1.0),  # as fast as 0, less accurate, less energy: front
    5: (0.90, 1.0, 5.0, -1.0),  # exact tie with 0: both stay
}


def _three_objective_study(storage=None, name=None) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                storage=storage, study_name=name)
    study.set_metric_names(["accuracy", "latency_ms", "energy_mj"])
    for n, (acc, lat, mj, slack) in POINTS.items():
        study.add_trial(create_trial(
            values=[acc, lat, mj], constraints={"max_latency_ms": slack},
            params={"sparsity": 0.1 * n},
            distributions={"sparsity": optuna.distributions.FloatDistribution(0, 1)},
            user_attrs={"arch": f"w1:ir_k3_e6_r{n}_s1_c16", "latency_ms": lat, "energy_mj": mj,
                        "size_bytes": 1000 + n}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"error": "boom"}))
    return study


def test_front_is_the_three_objective_front(tmp_path):
    study = _three_objective_study()
    frame = trials_frame(study)
    on_front = set(frame.loc[frame["pareto"], "trial"])
    assert on_front == {0, 1, 4, 5} == {t.number for t in study.best_trials}
    # On accuracy and latency alone, 1 and 4 are dominated by 0: the third objective keeps them.
    flat = pareto_mask(frame[["accuracy", "latency_ms"]], eligible=frame["feasible"])
    assert set(frame.loc[flat, "trial"]) == {0, 5}
    cols = list(frame.columns)
    assert cols[cols.index("latency_p90_ms") + 1] == "energy_mj"
    assert frame.attrs["objectives"] == ("accuracy", "latency_ms", "energy_mj")

    paths = write_report(study, tmp_path)
    pareto = pd.read_csv(paths["pareto"])
    assert list(pareto["trial"]) == [0, 4, 5, 1]  # fastest first
    assert list(pareto["energy_mj"]) == [5.0, 4.0, 5.0, 1.0]
    assert pd.read_csv(paths["trials"])["energy_mj"].tolist()[:6] == [5.0, 1.0, 6.0, 0.5, 4.0,
                                                                         5.0]
    page = paths["html"].read_text()
    assert "4 Pareto-optimal over accuracy, latency_ms, energy_mj" in page
    assert "accuracy against energy" in page and "energy: 1 mJ" in page
    assert page.count("Pareto front of 3 objectives") == 2  # one per plot


def test_two_objective_reports_keep_their_columns():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(create_trial(values=[0.5, 1.0], user_attrs={"arch": "a"}))
    assert "energy_mj" not in trials_frame(study).columns
    # A 2-objective study on a profile with energy figures still shows the energy it recorded.
    study.add_trial(create_trial(values=[0.6, 2.0], user_attrs={"arch": "b", "energy_mj": 0.3}))
    assert trials_frame(study)["energy_mj"].isna().tolist() == [True, False]


def test_dashboard_colours_the_front_by_energy_without_a_staircase(tmp_path):
    _three_objective_study(open_storage(tmp_path, None, create=True), "s3")
    frame = db.StudySource("s3", tmp_path, None).frame()
    fig = db.front_figure(frame)
    front = next(t for t in fig.data if t.name.startswith("front"))
    assert front.mode == "markers" and list(front.customdata) == [0, 4, 5, 1]
    assert list(front.marker.color) == [5.0, 4.0, 5.0, 1.0]
    assert front.marker.colorbar.title.text == "energy (mJ)"
    by_energy = db.front_figure(frame, x_metric="energy_mj")
    front = next(t for t in by_energy.data if t.name.startswith("front"))
    assert list(front.x) == [1.0, 4.0, 5.0, 5.0] and list(front.marker.color) == [2.0, 1.0, 1.0,
                                                                                   1.0]
    back = db.from_store(db.to_store(frame))
    assert back.attrs["objectives"] == ("accuracy", "latency_ms", "energy_mj")
    assert back["energy_mj"].tolist()[:2] == [5.0, 1.0]
    rows, columns = db.table_rows(back, None, None)
    assert "energy_mj" in {c["id"] for c in columns} and rows[1]["energy_mj"] == 1.0
    options = db.make_app("s3", tmp_path).layout["x-axis"].options
    assert "energy_mj" in [o["value"] for o in options]


# ---------------------------------------------------------------- picking on an N-objective front


def _old_knee(acc: np.ndarray, lat: np.ndarray) -> int:
    """The 2-objective chord rule as it was before --objectives, as an independent reference."""
    def scale(v):
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)

    a, lt = scale(acc), scale(lat)
    if len(acc) >= 3:
        lo, hi = int(np.argmin(lat)), int(np.argmax(lat))
        da, dl = a[hi] - a[lo], lt[hi] - lt[lo]
        norm = math.hypot(da, dl)
        if norm > 0:
            rise = (dl * (a - a[lo]) - da * (lt - lt[lo])) / norm
            if rise.max() > 1e-12:
                return int(np.argmax(rise))
    return int(np.lexsort((-acc, np.round(np.hypot(1.0 - a, lt), 12)))[0])


def test_knee_of_two_objectives_is_the_chord_rule():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 9))
        lat = np.sort(rng.choice(np.arange(1, 20), n, replace=False)).astype(float)
        acc = np.sort(rng.choice(np.arange(1, 100), n, replace=False)) / 100.0  # a real front
        assert ex.knee_point(np.column_stack([acc, lat]), (True, False)) == _old_knee(acc, lat)


def test_knee_of_three_objectives():
    # Extremes: 0 (most accurate), 1 (fastest), 2 (most frugal); 3 is good on all three.
    pts = np.array([[1.00, 10.0, 10.0], [0.50, 1.0, 9.0], [0.50, 9.0, 1.0], [0.95, 2.0, 2.0],
                    [0.60, 5.0, 5.0]])
    assert ex.knee_point(pts, (True, False, False)) == 3
    # Units do not matter.
    assert ex.knee_point(pts * [1, 1000, 0.001], (True, False, False)) == 3
    # The fastest point is also the most frugal (two extremes for three objectives): the plane
    # through them weighs latency and energy alike; 2 is far beyond it, 1 only on latency.
    pts = np.array([[1.00, 10.0, 10.0], [0.20, 1.0, 1.0], [0.90, 2.0, 3.0], [0.95, 1.5, 9.0]])
    assert ex.knee_point(pts, (True, False, False)) == 2
    # Two points: none beyond the plane through both; the one nearer the ideal corner.
    assert ex.knee_point(np.array([[0.9, 1.0, 2.0], [1.0, 2.0, 1.0]]), (True, False, False)) == 1


def test_picks_on_a_three_objective_study():
    study = _three_objective_study()
    assert [t.number for t in ex.pareto_trials(study)] == [0, 5, 4, 1]
    # 0 and 5 tie on accuracy and latency; within 1.5 ms 0 (first at equal energy) wins.
    assert ex.pick_under_latency(study, 1.5).trial.number == 0
    study.add_trial(create_trial(values=[0.90, 1.0, 4.5], constraints={"max_latency_ms": -1.0}))
    assert ex.pick_under_latency(study, 1.5).trial.number == 7  # same, but less energy
    assert ex.pick_knee(study).trial.number in {t.number for t in study.best_trials}
    # The ladder's selector chooses by latency: 1 and 4 (beaten on accuracy and latency) go.
    assert [t.number for t in ex.ladder_trials(study, 5)] == [7]


# ---------------------------------------------------------------- end to end


# Tiny students, so two trials take seconds whatever the sampler draws.
TINY_SPACE = """
input_resolution: 16
stages: [{channels: 8, stride: 1}, {channels: 16, stride: 2}]
choices: {block: [ir_k3_e3, ds_k3], sparsity: {low: 0.0, high: 0.5}, precision: [int8],
  width_mult: {low: 0.5, high: 1}, temperature: {low: 1, high: 4}, alpha: {low: 0, high: 0.9}}
"""


@pytest.mark.slow
def test_three_objective_search_report_and_knee_export(tmp_path, seeded_run_dir, capsys):
    run_dir = seeded_run_dir
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    study = search_and_report(SearchOptions(
        study="e3", run_dir=run_dir, trials=2, seed=0, profile="coral-edge-tpu", space=space,
        objectives=parse_objectives("accuracy,latency,energy"), epochs=1, finetune_epochs=0,
        progress=False, sampler="random"))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        assert t.values[2] == t.user_attrs["energy_mj"] > 0
        assert t.values[:2] == [t.user_attrs["accuracy"], t.user_attrs["latency_ms"]]
    trials = pd.read_csv(run_dir / "trials.csv")
    assert trials["energy_mj"].tolist() == [t.values[2] for t in study.trials]
    pareto = pd.read_csv(run_dir / "pareto.csv")
    front = {t.number: t for t in study.best_trials}
    assert set(pareto["trial"]) == set(front)
    assert all(front[r.trial].values[2] == r.energy_mj for r in pareto.itertuples())
    assert "Pareto-optimal over accuracy, latency_ms, energy_mj" in (
        run_dir / "report.html").read_text()

    capsys.readouterr()
    out = tmp_path / "knee"
    assert main(["export", "--study", "e3", "--run-dir", str(run_dir), "--knee",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trial"] in front and metrics["energy_mj"] == front[metrics["trial"]].values[2]
    assert "energy per inference" in (out / "README.md").read_text()

    # Resuming with another list is refused, on one line, before anything runs.
    code = main(["search", "--study", "e3", "--run-dir", str(run_dir), "--trials", "3",
                 "--profile", "coral-edge-tpu", "--space", str(space), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "created with --objectives accuracy,latency,energy, not accuracy,latency" in err
    assert len(optuna.load_study(study_name="e3", storage=open_storage(run_dir, None,
                                                                       create=False)).trials) == 2
    shutil.rmtree(out)
