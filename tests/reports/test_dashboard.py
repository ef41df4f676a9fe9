"""Dashboard logic without a browser: statuses, figures, panels, live reads and CLI errors."""

from __future__ import annotations

import socket
import subprocess
import sys

import optuna
import pytest
from dash import html
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from edgeshrink.reports import dashboard as db
from edgeshrink.search.study import open_storage

DISTS = {"precision": CategoricalDistribution(["fp32", "int8"]),
         "sparsity": FloatDistribution(0.0, 0.9)}
# number: (accuracy, latency_ms, constraint slack); slack > 0 means infeasible.
POINTS = {0: (0.90, 1.0, -1.0), 1: (0.95, 2.0, -1.0), 2: (0.80, 1.5, -1.0), 3: (0.99, 0.5, 0.3)}
CONFUSION = [[5, 1], [2, 7]]


def _complete(n: int, extra: dict | None = None) -> optuna.trial.FrozenTrial:
    acc, lat, slack = POINTS[n]
    attrs = {"arch": f"w1:ir_k3_e6_r{n}_s1_c16", "latency_p90_ms": lat * 1.2,
             "size_bytes": 1000 * (n + 1), "size_gzip_bytes": 600 * (n + 1), "params": 50 + n,
             "nonzero_params": 40 + n, "macs": 10_000 + n, **(extra or {})}
    return create_trial(params={"precision": ["fp32", "int8"][n % 2], "sparsity": 0.1 * n},
                        distributions=DISTS, values=[acc, lat], user_attrs=attrs,
                        constraints={"max_latency_ms": slack})


@pytest.fixture
def run_dir(tmp_path):
    """A journal-backed study like a search makes: 4 completed trials and one failure."""
    run_dir = tmp_path / "run"
    storage = open_storage(run_dir, None, create=True)
    study = optuna.create_study(study_name="s", storage=storage,
                                directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms"])
    study.add_trial(_complete(0, {"confusion": CONFUSION}))
    study.add_trial(_complete(1, {"layer_latency_ms": {"conv0": 0.4, "fc": 0.1}}))
    study.add_trial(_complete(2, {
        "accuracy_method": "host", "quantization": {"realised": {"int8": "native"}},
        "candidate": {"reduce_range": True},
        "cpu": {"model": "AMD EPYC 7B12", "arch": "x86_64", "int8_features": ["avx2"]}}))
    study.add_trial(_complete(3))
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={},
                                 user_attrs={"error": "RuntimeError: export exploded"}))
    return run_dir


@pytest.fixture
def source(run_dir):
    return db.StudySource("s", run_dir, None)


def _status(frame, budget=None, min_acc=None) -> dict[int, str | None]:
    return dict(zip(frame["trial"], db.trial_status(frame, budget, min_acc), strict=True))


def test_filters_grey_out_what_does_not_qualify(source):
    frame = source.frame()
    assert _status(frame) == {0: "front", 1: "front", 2: "dominated", 3: "infeasible", 4: None}
    # 1 is too slow for 1.6 ms, 2 not accurate enough; 3 passes both but stays infeasible.
    assert _status(frame, 1.6, 0.85) == {0: "front", 1: "filtered out", 2: "filtered out",
                                         3: "infeasible", 4: None}
    assert list(db.qualifies(frame, 1.6, 0.85)) == [True, False, False, True, False]
    assert db.counts_text(frame, 1.6, 0.85) == (
        "5 trials: 4 complete, 3 feasible, 1 failed, 0 running, 2 on the front; "
        "2 inside the filters")


def test_front_figure_puts_each_trial_in_its_layer(source):
    fig = db.front_figure(source.frame(), latency_budget=1.6, min_accuracy=0.85, selected=2)
    layers = {t.name: list(t.customdata) for t in fig.data}
    assert layers == {"filtered out (2)": [1, 2], "infeasible (1)": [3], "dominated (0)": [],
                      "front (1)": [0], "selected": [2]}
    front = next(t for t in fig.data if t.name == "front (1)")
    assert front.mode == "lines+markers" and list(front.marker.color) == [1000]
    # Dominated points are dimmed, the front is drawn at full strength.
    assert fig.data[2].marker.opacity < front.marker.opacity
    # With size on the x axis the colour switches to latency and the step line goes.
    by_size = db.front_figure(source.frame(), x_metric="size_bytes")
    front = next(t for t in by_size.data if t.name.startswith("front"))
    assert front.mode == "markers" and list(front.x) == [1000, 2000]
    assert list(front.marker.color) == [1.0, 2.0]


def test_empty_study_shows_an_empty_state(tmp_path):
    storage = open_storage(tmp_path, None, create=True)
    study = optuna.create_study(study_name="e", storage=storage,
                                directions=["maximize", "minimize"])
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={}))
    frame = db.StudySource("e", tmp_path, None).frame()
    fig = db.front_figure(frame)
    assert [a.text for a in fig.layout.annotations] == [db.EMPTY_TEXT] and not fig.data
    assert db.counts_text(frame).startswith("1 trial: 0 complete")
    rows, _ = db.table_rows(frame, None, None)
    assert rows == []
    # Nothing at all in the store (before the first refresh) renders the same way.
    assert not db.front_figure(db.from_store(None)).data
    assert db.latency_slider(frame, None, None)[0] == 1.0


def test_failed_and_infeasible_trials_are_listed_with_reasons(source):
    table = db.problems_children(source.frame())[0]
    rows = [[str(td.children) for td in tr.children] for tr in table.children[1:]]
    assert rows == [["3", "INFEASIBLE", "max_latency_ms violated by 0.3"],
                    ["4", "FAIL", "RuntimeError: export exploded"]]


def _text(component) -> str:
    """All text under a Dash component, depth first."""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, list):
        return " ".join(_text(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else _text(children)


def _ids(component) -> set[str]:
    found = {component.id} if isinstance(getattr(component, "id", None), str) else set()
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            found |= _ids(child)
    return found


def test_details_show_metrics_choices_and_the_confusion_matrix(source):
    details = html.Div(db.details_children(source.trial(0)))
    text = _text(details)
    assert "Trial 0" in text and "w1:ir_k3_e6_r0_s1_c16" in text
    for piece in ("0.9", "1.2", "1,000", "600", "10,000", "fp32", "sparsity"):
        assert piece in text
    graph = next(c for c in details.children if getattr(c, "id", None) == "confusion")
    assert [list(row) for row in graph.figure.data[0].z] == CONFUSION
    assert "layer-latency" not in _ids(details)  # no per-layer timings recorded: no section

    other = html.Div(db.details_children(source.trial(1)))
    assert "not recorded" in _text(other) and "confusion" not in _ids(other)
    bars = next(c for c in other.children if getattr(c, "id", None) == "layer-latency")
    assert list(bars.figure.data[0].y) == ["conv0", "fc"]
    assert list(bars.figure.data[0].x) == [0.4, 0.1]
    assert "scoring CPU" not in _text(other)  # trials from before it was recorded

    int8 = _text(html.Div(db.details_children(source.trial(2))))
    for piece in ("accuracy computed by", "host", "AMD EPYC 7B12 (x86_64; avx2)",
                  "can saturate", "7 bits (reduce range)"):
        assert piece in int8


def test_comparison_table_flags_the_rows_that_differ(source):
    frame = source.frame()
    assert "Pick two or three" in _text(db.comparison_children(frame, [0]))
    table = db.comparison_children(frame, [0, 2])[0]
    head, body = table.children
    assert _text(head).split() == ["trial", "0", "trial", "2"]
    rows = {tr.children[0].children: ([td.children for td in tr.children[1:]], tr.className)
            for tr in body.children}
    assert rows["validation accuracy"] == (["0.9", "0.8"], "differs")
    assert rows["precision"] == (["fp32", "fp32"], "")


def test_latency_slider_follows_new_maxima_only_when_left_at_the_top(source):
    frame = source.frame()
    top, step, value, marks = db.latency_slider(frame, None, None)
    assert (top, step, value) == (2.0, 0.01, 2.0) and 0 in marks
    assert db.latency_slider(frame, 1.0, 5.0)[2] == 1.0  # a chosen budget stays put
    assert db.latency_slider(frame, 1.5, 1.5)[2] == 2.0  # "no budget" follows the maximum


def test_store_round_trip_keeps_numbers_and_missing_values(source):
    frame = source.frame()
    back = db.from_store(db.to_store(frame))
    assert back["accuracy"].tolist()[:4] == [0.9, 0.95, 0.8, 0.99]
    assert back["size_gzip_bytes"].tolist()[:4] == [600, 1200, 1800, 2400]
    assert back["accuracy"].isna().tolist()[4] and back["pareto"].tolist()[:2] == [True, True]


def test_new_trials_written_by_another_process_show_up(source, run_dir):
    assert len(source.frame()) == 5
    other = optuna.load_study(study_name="s", storage=open_storage(run_dir, None, create=False))
    other.add_trial(create_trial(params={"precision": "int8", "sparsity": 0.0},
                                 distributions=DISTS, values=[0.97, 0.2],
                                 user_attrs={"arch": "w0.5:ds_k3_r1_s1_c16"}))
    frame = source.frame()
    assert len(frame) == 6 and _status(frame)[5] == "front"


def test_export_problems_are_shown_not_raised(source, tmp_path):
    missing = db.export_message(source, 99, tmp_path / "exports")
    assert missing.id == "export-error" and "has no trial 99" in _text(missing)
    failed = db.export_message(source, 4, tmp_path / "exports")
    assert "FAIL, not COMPLETE" in _text(failed)
    # Trial 0 completed, but this study has no artifacts on disk: a clear message, no crash.
    no_file = db.export_message(source, 0, tmp_path / "exports")
    assert no_file.id == "export-error" and "artifact" in _text(no_file)
    assert not (tmp_path / "exports" / "trial_0").exists()


def test_app_wires_every_panel(run_dir):
    app = db.make_app("s", run_dir)
    outputs = " ".join(app.callback_map)
    for target in ("trials-data.data", "front.figure", "details.children", "compare.value",
                   "comparison.children", "export-status.children", "problems.children",
                   "latency-budget.value", "selected-trial.data"):
        assert target in outputs
    # The page links the stylesheet shipped as a Dash asset, and the server hands it out.
    client = app.server.test_client()
    page = client.get("/").get_data(as_text=True)
    assert "/assets/dashboard.css" in page
    css = client.get("/assets/dashboard.css")
    assert css.status_code == 200 and b"code.arch" in css.get_data()


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeshrink.search.cli", "dashboard", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.slow
def test_cli_refuses_a_missing_study_and_a_busy_port(tmp_path, run_dir):
    result = _cli("--study", "ghost", "--run-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"edgeshrink: error: no study storage at {tmp_path / 'nothing' / 'study.journal'}; "
        "pass the --run-dir of an earlier search or --storage"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli("--study", "s", "--run-dir", str(run_dir), "--port", str(port),
                      cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], result.stderr
