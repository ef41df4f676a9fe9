"""End-to-end searches on digits with tiny budgets: every number must come from the artifact."""

import csv
import json
import shutil

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from edgeshrink.evaluators.device import resolve_device
from edgeshrink.evaluators.onnx_eval import onnx_accuracy
from edgeshrink.hardware_profiles.cpu import host_cpu
from edgeshrink.reports.frame import pareto_mask
from edgeshrink.reports.writer import search_and_report
from edgeshrink.search.runner import SearchOptions
from edgeshrink.spaces.candidate import Candidate

TINY = dict(epochs=2, finetune_epochs=1, progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, teacher_dir):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    shutil.copytree(teacher_dir, run_dir / "teacher")
    study = search_and_report(SearchOptions(study="e2e", run_dir=run_dir, trials=4, seed=3,
                                     sampler="random", **TINY))
    return study, run_dir


@pytest.mark.slow
def test_metrics_come_from_the_exported_file(finished, digits16):
    study, _ = finished
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    for t in complete:
        artifact = t.user_attrs["artifact"]
        again = onnx_accuracy(artifact, digits16.val.x.numpy(), digits16.val.y.numpy())
        assert again == t.values[0] == t.user_attrs["accuracy"]
        assert t.user_attrs["accuracy_method"] == "host"
        assert t.user_attrs["cpu"] == host_cpu().to_dict()
        assert t.values[1] == t.user_attrs["latency_ms"] > 0
        assert t.user_attrs["latency_p90_ms"] >= t.user_attrs["latency_ms"]
        # Early abort is on, but host measures latency and no limit was set: a preview would
        # cost a timing per trial and save nothing (search/trial.py), so none was taken.
        assert t.user_attrs["preview_latency_ms"] is None
        assert "preview" not in t.user_attrs["stage_seconds"]
        with open(artifact, "rb") as fh:
            assert len(fh.read()) == t.user_attrs["size_bytes"]
        assert t.user_attrs["macs"] > 0 and t.user_attrs["params"] > 0
        assert t.user_attrs["arch"].startswith("w")
        assert {"torch", "onnxruntime", "optuna"} <= set(t.user_attrs["versions"])
        assert t.user_attrs["train_device"]["device"] == resolve_device("auto")
        # int8 artifacts really are quantized graphs; fp32 ones are not.
        with open(artifact, "rb") as fh:
            text = fh.read()
        cand = Candidate.from_dict(t.user_attrs["candidate"])
        quantized = {cand.precision, *cand.stage_precisions} & {"int8", "int4"}
        assert (b"QuantizeLinear" in text) == bool(quantized)
        # On host, int8 weights take 7 bits exactly where this CPU's kernels would saturate.
        assert cand.reduce_range == ("int8" in quantized and host_cpu().int8_saturates)
    assert study.user_attrs["setup"]["cpu"]["model"] == host_cpu().model


@pytest.mark.slow
def test_pareto_csv_holds_exactly_the_non_dominated_trials(finished):
    study, run_dir = finished
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    expected = set()
    for t in complete:
        a, lat = t.values
        dominated = any(
            (o.values[0] >= a and o.values[1] <= lat) and (o.values[0] > a or o.values[1] < lat)
            for o in complete
        )
        if not dominated:
            expected.add(t.number)
    with open(run_dir / "pareto.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["trial"]) for r in rows} == expected
    with open(run_dir / "trials.csv") as fh:
        header = next(csv.reader(fh))
    for col in ("accuracy", "latency_ms", "size_bytes", "state", "sparsity", "precision",
                "stage0_type", "width_mult", "temperature", "alpha"):
        assert col in header
    html = (run_dir / "report.html").read_text()
    assert "plotly" in html and complete[0].user_attrs["arch"] in html


@pytest.mark.slow
def test_resume_keeps_earlier_trials_and_does_not_repeat_them(finished):
    study, run_dir = finished
    before = {t.number: (t.values, t.params) for t in study.trials}
    resumed = search_and_report(SearchOptions(study="e2e", run_dir=run_dir, trials=5, seed=3,
                                       sampler="random", **TINY))
    after = {t.number: (t.values, t.params) for t in resumed.trials}
    assert len(after) == 5
    for number, record in before.items():
        assert after[number] == record
    assert after[4][1] not in [p for _, p in before.values()]
    # The teacher was reused from the run directory, not retrained.
    assert json.loads((run_dir / "teacher" / "teacher.json").read_text())["key"]


@pytest.mark.slow
def test_constraints_are_real_optuna_constraints(seeded_run_dir):
    # Without early abort: with it, the latency preview would stop these trials before training
    # (tests/search/test_early_stop.py).
    study = search_and_report(SearchOptions(study="c", run_dir=seeded_run_dir, trials=2, seed=1,
                                     sampler="random", max_latency=1e-6, min_accuracy=0.0,
                                     early_stop=False, **TINY))
    for t in study.trials:
        assert t.constraints["max_latency_ms"] > 0  # nothing runs in a nanosecond
        assert t.constraints["min_accuracy"] <= 0
    assert study.best_trials == []
    assert len(study.trials) == 2 and all(t.values for t in study.trials)


@pytest.mark.slow
def test_failing_trial_is_recorded_and_the_study_goes_on(seeded_run_dir, monkeypatch):
    from edgeshrink.search import trial as trial_mod

    real = trial_mod.evaluate_candidate
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("export exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_mod, "evaluate_candidate", flaky)
    study = search_and_report(SearchOptions(study="f", run_dir=seeded_run_dir, trials=2, seed=0,
                                            sampler="random", **TINY))
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.FAIL and states[1] == TrialState.COMPLETE
    assert study.trials[0].user_attrs["error"] == "RuntimeError: export exploded"
    with open(seeded_run_dir / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["state"] == "FAIL" and "export exploded" in rows[0]["error"]


def test_pareto_mask_matches_optuna_on_a_random_front():
    rng = np.random.default_rng(0)
    pts = rng.random((40, 2))
    study = optuna.create_study(directions=["maximize", "minimize"])
    for p in pts:
        study.add_trial(optuna.trial.create_trial(values=list(p)))
    mask = pareto_mask(pts)
    assert set(np.flatnonzero(mask)) == {t.number for t in study.best_trials}
