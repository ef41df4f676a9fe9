"""Export: every picking mode, the no-feasible-point case, the ladder selector, atomic writes,
and that what is shipped is the measured artifact and rebuilds from its config."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch
from optuna.trial import TrialState

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.build import load_build_config
from edgeshrink.evaluators.onnx_eval import onnx_accuracy
from edgeshrink.reports import export as ex
from edgeshrink.reports.selector import select
from edgeshrink.search.cli import main
from edgeshrink.search.runner import SearchOptions, run_search

# ---------------------------------------------------------------- picking, on known numbers


def _study(points, infeasible=(), failed=()):
    """In-memory study whose trials have the given (accuracy, latency) values."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, (acc, lat) in enumerate(points):
        constraints = {"max_latency_ms": 1.0 if i in infeasible else -1.0}
        if i in failed:
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.FAIL, user_attrs={"error": "RuntimeError: boom"}))
        else:
            study.add_trial(optuna.trial.create_trial(values=[acc, lat], constraints=constraints))
    return study


def test_knee_is_the_point_farthest_above_the_chord():
    # A sharp elbow at 2 ms: 0.95 accuracy for a fifth of the slowest latency.
    acc = np.array([0.50, 0.95, 0.97, 1.00])
    lat = np.array([1.0, 2.0, 6.0, 10.0])
    assert ex.knee_index(acc, lat) == 1
    # Units do not matter: the same front in microseconds has the same knee.
    assert ex.knee_index(acc, lat * 1000) == 1
    # Two points: no chord to rise above; the tie for the ideal corner goes to accuracy.
    assert ex.knee_index(np.array([0.9, 1.0]), np.array([1.0, 1.1])) == 1
    # A concave front (nothing above the chord): the point nearest the ideal corner.
    assert ex.knee_index(np.array([0.1, 0.8, 0.9, 1.0]), np.array([1.0, 8.0, 9.0, 10.0])) == 1


def test_pick_knee_uses_only_the_feasible_front():
    study = _study([(0.50, 1.0), (0.95, 2.0), (0.97, 6.0), (1.00, 10.0), (0.99, 1.5)],
                   infeasible={4})
    pick = ex.pick_knee(study)
    assert pick.trial.number == 1 and "4-point front" in pick.reason


def test_pick_under_latency_takes_the_most_accurate_that_fits():
    study = _study([(0.90, 0.05), (0.96, 0.08), (0.99, 0.12), (0.995, 0.07)], infeasible={3})
    assert ex.pick_under_latency(study, 0.10).trial.number == 1  # 3 is faster but infeasible
    assert ex.pick_under_latency(study, 0.12).trial.number == 2
    assert ex.pick_under_latency(study, 0.05).trial.number == 0


def test_no_trial_fits_the_budget_names_the_closest_point():
    study = _study([(0.90, 0.05), (0.96, 0.08)])
    with pytest.raises(EdgeshrinkError, match=r"no trial meets 0.01 ms; the closest is trial 0 "
                                              r"\(accuracy 0.9000, 0.0500 ms\).*--trial 0"):
        ex.pick_under_latency(study, 0.01)


def test_pick_by_number_refuses_missing_and_failed_trials():
    study = _study([(0.9, 0.05), (0.0, 0.0)], failed={1})
    assert ex.pick_by_number(study, 0).trial.number == 0
    with pytest.raises(EdgeshrinkError, match="no trial 7"):
        ex.pick_by_number(study, 7)
    with pytest.raises(EdgeshrinkError, match="trial 1 is FAIL.*boom"):
        ex.pick_by_number(study, 1)


def test_ladder_spreads_over_the_latency_range():
    lat = [0.04, 0.05, 0.06, 0.08, 0.12, 0.16, 0.32]
    acc = [0.50, 0.80, 0.90, 0.95, 0.97, 0.98, 0.99]
    study = _study(list(zip(acc, lat, strict=True)) + [(0.5, 0.3)])  # last one is dominated
    rungs = ex.ladder_trials(study, 3)
    # Ends of the front plus the point nearest the geometric middle (0.113 ms).
    assert [t.number for t in rungs] == [0, 4, 6]
    assert [t.number for t in ex.ladder_trials(study, 20)] == list(range(7))
    with pytest.raises(EdgeshrinkError, match="at least 1"):
        ex.ladder_trials(study, 0)


def test_selector_returns_the_most_accurate_model_within_budget(tmp_path):
    rungs = [{"trial": 3, "accuracy": 0.90, "latency_ms": 0.05, "model": "a/model.onnx"},
             {"trial": 8, "accuracy": 0.97, "latency_ms": 0.09, "model": "b/model.onnx"},
             {"trial": 9, "accuracy": 0.99, "latency_ms": 0.20, "model": "c/model.onnx"}]
    (tmp_path / "ladder.json").write_text(json.dumps({"rungs": rungs}))
    assert select(0.10, tmp_path) == str(tmp_path / "b/model.onnx")
    assert select(1.0, tmp_path) == str(tmp_path / "c/model.onnx")
    assert select(0.05, tmp_path) == str(tmp_path / "a/model.onnx")
    assert select(0.01, tmp_path) is None


# ---------------------------------------------------------------- exporting a real study


@pytest.fixture(scope="module")
def real_study(tmp_path_factory, teacher_dir):
    run_dir = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(teacher_dir, run_dir / "teacher")
    study = run_search(SearchOptions(study="ex", run_dir=run_dir, trials=3, seed=5,
                                     sampler="random", epochs=1, finetune_epochs=1,
                                     progress=False, report=False))
    return study, run_dir


@pytest.mark.slow
def test_export_writes_the_measured_artifact_and_its_proof(real_study, tmp_path, digits16):
    study, run_dir = real_study
    out = tmp_path / "model"
    assert main(["export", "--study", "ex", "--run-dir", str(run_dir), "--knee",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.yaml", "metrics.json", "model.onnx", "weights.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    trial = study.trials[metrics["trial"]]
    # Byte-identical to the file the search measured, and it scores what the study stored.
    src = run_dir / "trials" / f"{trial.number:05d}" / "model.onnx"
    assert (out / "model.onnx").read_bytes() == src.read_bytes()
    assert metrics["validation_accuracy"] == trial.values[0]
    test_acc = onnx_accuracy(out / "model.onnx", digits16.test.x.numpy(), digits16.test.y.numpy())
    assert metrics["test_accuracy"] == test_acc
    assert metrics["latency_ms"] == trial.values[1]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: digits16.test.x[:4].numpy()})[0]
    assert logits.shape == (4, 10)
    assert isinstance(torch.load(out / "weights.pt", weights_only=True), dict)
    config = load_build_config(out / "config.yaml")
    assert config.candidate.arch == trial.user_attrs["arch"]
    assert config.seed == 5 + trial.number and config.source == {"study": "ex",
                                                                 "trial": trial.number}
    card = (out / "README.md").read_text()
    assert trial.user_attrs["arch"] in card and "onnxruntime" in card
    assert f"{test_acc:.4f}" in card


@pytest.mark.slow
def test_export_refuses_an_artifact_that_does_not_reproduce(real_study, tmp_path):
    study, run_dir = real_study
    tampered = tmp_path / "run"
    shutil.copytree(run_dir / "trials", tampered / "trials")
    accs = [t.values[0] for t in study.trials]
    # Swap in another trial's model (with a different accuracy) under trial 0's name.
    other = next(i for i, a in enumerate(accs) if a != accs[0])
    shutil.copy(tampered / "trials" / f"{other:05d}" / "model.onnx",
                tampered / "trials" / "00000" / "model.onnx")
    moved = study.trials[0]
    study_copy = optuna.create_study(directions=["maximize", "minimize"])
    study_copy.set_user_attr("setup", study.user_attrs["setup"])
    attrs = dict(moved.user_attrs, artifact=str(tampered / "trials/00000/model.onnx"))
    study_copy.add_trial(optuna.trial.create_trial(values=moved.values, params=moved.params,
                                                   distributions=moved.distributions,
                                                   user_attrs=attrs))
    with pytest.raises(EdgeshrinkError, match="scores validation accuracy .* but the study "
                                              "stored"):
        ex.export_trial(study_copy, 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging left behind


def test_interrupted_export_keeps_the_old_directory(real_study, tmp_path, monkeypatch):
    study, run_dir = real_study
    out = tmp_path / "model"
    ex.export_trial(study, 0, out, run_dir=run_dir)
    before = (out / "metrics.json").read_text()
    assert main(["export", "--study", "ex", "--run-dir", str(run_dir), "--trial", "1",
                 "--out", str(out)]) == 2  # exists: refused without --force

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ex.bundle, "model_card", crash)  # where the export calls it
    with pytest.raises(KeyboardInterrupt):
        ex.export_trial(study, 1, out, run_dir=run_dir, force=True)
    assert (out / "metrics.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    monkeypatch.undo()
    ex.export_trial(study, 1, out, run_dir=run_dir, force=True)
    assert json.loads((out / "metrics.json").read_text())["trial"] == 1


def test_ladder_export_and_its_selector(real_study, tmp_path):
    study, run_dir = real_study
    out = tmp_path / "ladder"
    results = ex.export_ladder(study, 2, out, run_dir=run_dir)
    ladder = json.loads((out / "ladder.json").read_text())
    assert [r["trial"] for r in ladder["rungs"]] == [r.trial for r in results]
    assert (out / ex.SELECTOR_FILE).is_file()
    fastest = min(ladder["rungs"], key=lambda r: r["latency_ms"])
    chosen = select(fastest["latency_ms"], out)
    assert chosen == str(out / fastest["model"])
    ort.InferenceSession(chosen, providers=["CPUExecutionProvider"])
    assert select(fastest["latency_ms"] / 2, out) is None


def test_cli_latency_budget_without_a_fit_fails_and_writes_nothing(real_study, tmp_path, capsys):
    _, run_dir = real_study
    out = tmp_path / "none"
    code = main(["export", "--study", "ex", "--run-dir", str(run_dir), "--max-latency", "1e-6",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "closest is trial" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_build_from_config_reproduces_the_exported_model(real_study, tmp_path, teacher_dir):
    study, run_dir = real_study
    exported = tmp_path / "exported"
    ex.export_trial(study, 2, exported, run_dir=run_dir)
    built = tmp_path / "built"
    assert main(["build", str(exported / "config.yaml"), "--out", str(built),
                 "--teacher-dir", str(run_dir / "teacher")]) == 0
    assert (built / "model.onnx").read_bytes() == (exported / "model.onnx").read_bytes()
    assert main(["build", str(exported / "README.md"), "--out", str(tmp_path / "x")]) == 2
