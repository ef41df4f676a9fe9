"""Base (the user's own model, compressed) beside searched students: the frame's family and
*_vs_base columns, the report's and the dashboard's markers, axis, filters and details."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
from dash import html
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from edgeshrink.reports import dashboard as db
from edgeshrink.reports import trials_frame, write_report
from edgeshrink.reports.frame import BASE_COLUMNS, base_reference, choice_columns
from edgeshrink.reports.html import report_figure
from edgeshrink.search.study import open_storage

DISTS = {"family": CategoricalDistribution(["base", "student"]),
         "sparsity": FloatDistribution(0.0, 0.9)}
GROUPS = [
    {"group": 0, "units": ["layer1.0.conv1", "layer1.1.conv1"], "kept": 96, "total": 128},
    {"group": 1, "units": ["layer2.0.conv1"], "kept": 64, "total": 64},
]
# number: (family, accuracy, latency_ms); binary fractions, so differences are exact.
POINTS = {
    0: ("base", 0.9375, 8.0),  # the uncompressed reference, the most accurate: front
    1: ("base", 0.875, 4.0),  # front
    2: ("student", 0.8125, 1.0),  # front
    3: ("student", 0.75, 2.0),  # dominated by 2, below the axis
    4: ("student", 0.125, 3.0),  # failed to learn: far below the axis
}
FLOOR = 0.8125 - 0.1 * (0.9375 - 0.8125)  # front min less 10% of the front's span


def _trial(n: int, reference: bool = False, **extra) -> optuna.trial.FrozenTrial:
    family, acc, lat = POINTS[n]
    attrs = {"arch": f"resnet18 keep {1 - n / 10:.2f}" if family == "base" else f"w1:r{n}",
             "family": family, "size_bytes": 1000 * (n + 1), **extra}
    if family == "base":
        attrs["pruning"] = {"channels": {} if reference else {"layer1.0.conv1": [64, 48]}}
        attrs["channel_groups"] = [] if reference else GROUPS
    if reference:
        attrs["reference"] = "base"
    return create_trial(params={"family": family, "sparsity": 0.1 * n}, distributions=DISTS,
                        values=[acc, lat], user_attrs=attrs)


def _fill(study: optuna.Study, reference_state: TrialState = TrialState.COMPLETE) -> None:
    study.set_metric_names(["accuracy", "latency_ms"])
    if reference_state == TrialState.COMPLETE:
        study.add_trial(_trial(0, reference=True))
    else:  # a reference that never completed: nothing to compare with
        study.add_trial(create_trial(state=reference_state, params={"family": "base"},
                                     distributions={"family": DISTS["family"]},
                                     user_attrs={"family": "base", "reference": "base"}))
    for n in (1, 2, 3, 4):
        study.add_trial(_trial(n))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"family": "base",
                                                                    "error": "boom"}))


@pytest.fixture
def study() -> optuna.Study:
    s = optuna.create_study(directions=["maximize", "minimize"])
    _fill(s)
    return s


def test_frame_compares_every_trial_with_the_base_model(study):
    frame = trials_frame(study)
    cols = list(frame.columns)
    assert cols[cols.index("arch"):] == ["arch", "family", "acc_vs_base", "speedup_vs_base",
                                         "sparsity", "error", "duration_s"]
    assert choice_columns(frame) == ["sparsity"]  # the family param is the family column
    assert "param_family" not in cols and base_reference(frame) == 0
    rows = frame.set_index("trial")
    assert rows["family"].tolist() == ["base", "base", "student", "student", "student", "base"]
    assert rows["acc_vs_base"].tolist()[:5] == [0.0, -0.0625, -0.125, -0.1875, -0.8125]
    assert rows["speedup_vs_base"].tolist()[:5] == [1.0, 2.0, 8.0, 4.0, 8.0 / 3.0]
    assert math.isnan(rows.loc[5, "acc_vs_base"]) and math.isnan(rows.loc[5, "speedup_vs_base"])
    assert set(frame.loc[frame["pareto"], "trial"]) == {0, 1, 2}


@pytest.mark.parametrize("state", [TrialState.RUNNING, TrialState.FAIL])
def test_without_a_complete_reference_the_comparison_is_nan(state):
    s = optuna.create_study(directions=["maximize", "minimize"])
    _fill(s, reference_state=state)
    frame = trials_frame(s)
    assert base_reference(frame) is None
    assert frame[list(BASE_COLUMNS)].isna().all().all()
    assert frame["family"].tolist()[:2] == ["base", "base"]


def test_student_only_and_old_studies_have_no_base_columns():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(create_trial(values=[0.5, 1.0], user_attrs={"arch": "old"}))  # no family attr
    s.add_trial(create_trial(values=[0.6, 2.0], params={"family": "student"},
                             distributions={"family": DISTS["family"]}, user_attrs={"arch": "p"}))
    frame = trials_frame(s)
    assert frame["family"].tolist() == ["student", "student"]
    assert not set(BASE_COLUMNS) & set(frame.columns)
    assert db.family_filter_style(frame) == {"display": "none"}
    assert "(" not in db.counts_text(frame)  # no per-family counts for a single family


def test_csvs_and_the_report_carry_family_and_base_columns(study, tmp_path: Path):
    paths = write_report(study, tmp_path)
    trials = pd.read_csv(paths["trials"])
    assert trials["family"].tolist() == ["base", "base", "student", "student", "student", "base"]
    assert trials["acc_vs_base"].tolist()[:3] == [0.0, -0.0625, -0.125]
    pareto = pd.read_csv(paths["pareto"])  # fastest first
    assert pareto["trial"].tolist() == [2, 1, 0]
    assert pareto["speedup_vs_base"].tolist() == [8.0, 2.0, 1.0]
    assert pareto["family"].tolist() == ["student", "base", "base"]
    page = paths["html"].read_text()
    assert "6 trials (3 base, 3 student)" in page
    for piece in ("<th>family</th>", "<th>acc_vs_base</th>", "<th>speedup_vs_base</th>",
                  "<td>-0.0625</td>", "base model (trial 0)", "vs base model: -0.1250 accuracy"):
        assert piece in page, piece


def _traces(fig) -> dict[str, object]:
    return {t.name: t for t in fig.data}


def _pinned_checks(fig, points: dict[int, tuple[float, str, str]]) -> None:
    """Every trace point: (y, symbol, hover) by trial, against the expected pinning."""
    bottom, top = fig.layout.yaxis.range
    assert bottom == pytest.approx(FLOOR, abs=1e-12) and top == pytest.approx(0.9375 + 0.0125)
    assert points[3][0] == points[4][0] == bottom  # pinned at the axis edge
    assert points[3][1].endswith("-open") and points[4][1].endswith("-open")
    assert "accuracy 0.125 is below the axis" in points[4][2]
    assert "accuracy 0.75 is below the axis" in points[3][2]
    assert points[2][0] == 0.8125 and not points[2][1].endswith("-open")
    assert points[0][1] == "diamond" and points[2][1] == "circle"  # base vs student


def test_report_figure_marks_families_pins_outliers_and_offers_log(study):
    fig = report_figure(trials_frame(study), "t")
    traces = _traces(fig)
    points = {}
    for name in ("feasible", "Pareto front"):
        t = traces[name]
        for hover, y, symbol in zip(t.text, t.y, t.marker.symbol, strict=True):
            points[int(hover.split("</b>")[0].split()[-1])] = (y, symbol, hover)
    _pinned_checks(fig, points)
    assert traces["feasible"].cliponaxis is False  # pinned markers drawn whole on the edge
    star = traces["base model (trial 0)"]
    assert list(star.marker.symbol) == ["star"] and list(star.y) == [0.9375]
    keys = [n for n in traces if n.startswith(("base (", "student ("))]
    assert keys == ["student (searched network) (3)", "base (your model, compressed) (2)"]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.args[0]["xaxis.type"] for b in buttons] == ["linear", "log"]


def test_report_figure_without_a_front_keeps_auto_range():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(create_trial(values=[0.5, 1.0], user_attrs={"arch": "a"},
                             constraints={"max_latency_ms": 0.5}))  # infeasible: no front
    fig = report_figure(trials_frame(s), "t")
    assert fig.layout.yaxis.range is None
    assert list(_traces(fig)["infeasible"].marker.symbol) == ["x"]


def test_dashboard_front_pins_filters_families_and_logs(study):
    frame = db.from_store(db.to_store(db.dashboard_frame(study)))
    assert base_reference(frame) == 0  # the reference survives the browser store
    fig = db.front_figure(frame)
    points = {}
    for t in fig.data:
        if t.name.split(" (")[0] in ("front", "dominated"):
            for n, y, symbol, hover in zip(t.customdata, t.y, t.marker.symbol, t.text,
                                           strict=True):
                points[n] = (y, symbol, hover)
    _pinned_checks(fig, points)
    assert "(front, base)" in points[0][2]
    traces = _traces(fig)
    assert list(traces["base model (trial 0)"].marker.symbol) == ["star"]
    assert fig.layout.xaxis.type is None

    shown = {n for t in fig.data if t.customdata is not None for n in t.customdata}
    assert shown == {0, 1, 2, 3, 4}
    students = db.front_figure(frame, model_families=["student"], log_x=True)
    assert {n for t in students.data if t.customdata is not None
            for n in t.customdata} == {2, 3, 4}
    assert students.layout.xaxis.type == "log"
    # Only student 2 is on the shown front: the axis follows it.
    assert students.layout.yaxis.range[0] == pytest.approx(0.8125 - 0.005)
    bases = db.front_figure(frame, model_families=["base"])
    assert {n for t in bases.data if t.customdata is not None for n in t.customdata} == {0, 1}
    none = db.front_figure(frame, model_families=[])
    assert not none.data and "chosen model families" in none.layout.annotations[0].text


def test_dashboard_counts_table_and_filter_visibility(study):
    frame = db.dashboard_frame(study)
    assert db.counts_text(frame).startswith("6 trials (3 base, 3 student): 5 complete")
    assert db.family_filter_style(frame) == {}
    rows, columns = db.table_rows(frame, None, None)
    ids = [c["id"] for c in columns]
    assert ids[ids.index("arch"):ids.index("arch") + 4] == ["arch", "family", "acc_vs_base",
                                                              "speedup_vs_base"]
    assert [(r["family"], r["acc_vs_base"]) for r in rows][:2] == [("base", 0.0),
                                                                   ("base", -0.0625)]
    students, _ = db.table_rows(db.in_families(frame, ["student"]), None, None)
    assert [r["trial"] for r in students] == [2, 3, 4]


def _text(component) -> str:
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, list):
        return " ".join(_text(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else _text(children)


def _find(component, cid: str):
    if getattr(component, "id", None) == cid:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            found = _find(child, cid)
            if found is not None:
                return found
    return None


def test_details_list_the_channels_kept_per_stage_group(study):
    trials = {t.number: t for t in study.trials}
    details = html.Div(db.details_children(trials[1]))
    table = _find(details, "channel-groups")
    head, body = table.children
    assert _text(head).split() == ["group", "units", "kept", "/", "total", "kept"]
    assert [[_text(td) for td in tr.children] for tr in body.children] == [
        ["0", "layer1.0.conv1, layer1.1.conv1", "96 / 128", "75.0%"],
        ["1", "layer2.0.conv1", "64 / 64", "100.0%"]]
    assert "base ·" in _text(details)
    reference = html.Div(db.details_children(trials[0]))
    assert "the uncompressed base model" in _text(reference)
    assert _find(reference, "channel-groups-missing") is not None  # nothing pruned
    student = html.Div(db.details_children(trials[2]))
    assert _find(student, "channel-groups") is None
    assert "Channels kept" not in _text(student)


def test_app_offers_the_family_filter_and_the_log_toggle(tmp_path):
    storage = open_storage(tmp_path, None, create=True)
    s = optuna.create_study(study_name="fam", storage=storage,
                            directions=["maximize", "minimize"])
    _fill(s)
    app = db.make_app("fam", tmp_path)
    for cid in ("family-filter", "log-x", "family-filter-box"):
        assert _find(app.layout, cid) is not None, cid
    assert _find(app.layout, "family-filter").value == ["base", "student"]
    outputs = " ".join(app.callback_map)
    assert "family-filter-box.style" in outputs
