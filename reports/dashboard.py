"""Live Pareto dashboard: a Dash app over the study storage, refreshed while a search runs.

The study is opened once, so a missing study fails before anything is served; every refresh then
re-reads the same storage object, which syncs with the file or database (a JournalStorage reads
only the log lines appended since its last read). Layout pieces and callback bodies are plain
functions so tests can check them without a browser; :func:`make_app` only wires them up.

A study with more than two objectives (``--objectives accuracy,latency,energy``) is still drawn as
accuracy against the chosen x axis, its points coloured by the first extra objective not on that
axis; its front (the study's ``best_trials``) is not a staircase in such a view, so no step line
joins it, and the energy column and x axis appear wherever the study records energy.
"""

from __future__ import annotations

import json
import logging
import math
import socket
from pathlib import Path
from typing import Any

import dash
import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dash_table, dcc, html
from optuna.trial import FrozenTrial

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.hardware_profiles.cpu import CpuInfo
from edgeshrink.reports.frame import (
    ENERGY_COLUMN,
    OBJECTIVES,
    choice_columns,
    frame_objectives,
    trials_frame,
)
from edgeshrink.reports.paths import inside
from edgeshrink.search.study import default_run_dir, load_existing_study

REFRESH_S = 3.0
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
}
X_AXES = ("latency_ms", "latency_p90_ms", ENERGY_COLUMN, "size_bytes", "size_gzip_bytes",
          "macs")
EMPTY_TEXT = "No completed trials yet. This page re-reads the study every few seconds."
# Status of a completed trial, as shown in the table and used to grey rows.
FRONT, DOMINATED, INFEASIBLE, FILTERED = "front", "dominated", "infeasible", "filtered out"
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.2rem 2rem; color: #222; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin: 1.4rem 0 .4rem; }
.counts { color: #555; margin-bottom: .8rem; }
.controls { display: flex; gap: 2rem; align-items: flex-start; flex-wrap: wrap; }
.controls > div { min-width: 16rem; flex: 1; }
.main { display: flex; gap: 1.5rem; align-items: flex-start; }
.main > .plot { flex: 3; min-width: 0; } .main > .side { flex: 2; min-width: 0; }
.side { border-left: 3px solid #eee; padding-left: 1rem; }
.kv { border-collapse: collapse; font-size: .85rem; }
.kv td, .kv th { padding: .15rem .6rem; border-bottom: 1px solid #eee; text-align: left; }
.kv td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kv tr.differs td { font-weight: 600; background: #fff7e0; }
code.arch { word-break: break-all; font-size: .8rem; }
.empty { padding: 1.5rem; background: #f6f6f6; color: #666; }
.error { color: #b00020; } .ok { color: #1b5e20; }
button { margin: .4rem .4rem .4rem 0; padding: .3rem .9rem; }
"""


# ---------------------------------------------------------------- data


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


def _metrics(frame: pd.DataFrame, names: tuple[str, ...] = METRICS) -> list[str]:
    """The ``names`` this frame has a column for (energy only where the study records it)."""
    return [m for m in names if m in frame.columns]


def to_store(frame: pd.DataFrame) -> dict[str, Any]:
    """JSON-safe form for a dcc.Store (NaN and <NA> become null, numpy types plain numbers)."""
    return {"columns": list(frame.columns), "objectives": list(frame_objectives(frame)),
            "rows": json.loads(frame.to_json(orient="records", double_precision=15))}


def from_store(data: dict[str, Any] | None) -> pd.DataFrame:
    if not data:
        plain = [m for m in METRICS if m != ENERGY_COLUMN]
        return pd.DataFrame(columns=["trial", "state", *plain, "feasible", "pareto", "arch",
                                     "error", "duration_s", "reason"])
    frame = pd.DataFrame(data["rows"], columns=data["columns"])
    frame.attrs["objectives"] = tuple(data.get("objectives", OBJECTIVES))
    for col in (*_metrics(frame), "duration_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["trial"] = frame["trial"].astype(int)
    for col in ("feasible", "pareto"):
        frame[col] = frame[col].fillna(False).astype(bool)
    return frame


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
    return (
        f"{len(frame)} trial{'' if len(frame) == 1 else 's'}: "
        f"{int((state == 'COMPLETE').sum())} complete, "
        f"{int(frame['feasible'].sum())} feasible, {int((state == 'FAIL').sum())} failed, "
        f"{running} running, {int(frame['pareto'].sum())} on the front; "
        f"{inside} inside the filters"
    )


# ---------------------------------------------------------------- figures


def _num(value: Any, digits: int = 4) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}g}"
    if isinstance(value, (int, float, np.integer)):
        return f"{int(value):,}"
    return str(value)


def _hover(rows: pd.DataFrame) -> list[str]:
    energy = ENERGY_COLUMN in rows.columns
    return [
        f"<b>trial {r.trial}</b> ({r.plot_status})<br>{r.arch}<br>accuracy {_num(r.accuracy)}"
        f"<br>latency {_num(r.latency_ms)} ms"
        + (f"<br>energy {_num(getattr(r, ENERGY_COLUMN))} mJ" if energy else "")
        + f"<br>size {_num(r.size_bytes)} B"
        for r in rows.itertuples()
    ]


def colour_metric(objectives: tuple[str, ...], x_metric: str) -> str:
    """The first objective beyond accuracy and latency that is not on x; else latency when x is
    a size or an extra objective, size otherwise."""
    extra = [k for k in objectives if k not in (*OBJECTIVES, x_metric)]
    if extra:
        return extra[0]
    on_x = x_metric.startswith("size") or x_metric in objectives[len(OBJECTIVES):]
    return "latency_ms" if on_x else "size_bytes"


def front_figure(frame: pd.DataFrame, latency_budget: float | None = None,
                 min_accuracy: float | None = None, x_metric: str = "latency_ms",
                 selected: int | None = None, compared: list[int] | None = None) -> go.Figure:
    """Accuracy against ``x_metric``, coloured by :func:`colour_metric`.

    The front is joined by a step line only when x is latency and the study has two objectives.
    """
    fig = go.Figure()
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 30, "b": 50},
                      height=480, uirevision="keep-zoom", hovermode="closest",
                      legend={"orientation": "h", "y": -0.18},
                      yaxis_title=LABELS["accuracy"], xaxis_title=LABELS[x_metric])
    done = frame[frame["state"] == "COMPLETE"].copy()
    if done.empty:
        fig.add_annotation(text=EMPTY_TEXT, showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font={"size": 15, "color": "#666"})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return fig
    done["plot_status"] = trial_status(done, latency_budget, min_accuracy)
    objectives = frame_objectives(frame)
    colour = colour_metric(objectives, x_metric)
    cmin, cmax = float(done[colour].min()), float(done[colour].max())
    colour_axis = {"colorscale": "Viridis", "cmin": cmin, "cmax": max(cmax, cmin + 1e-9)}
    layers = [
        (FILTERED, {"color": "#d9d9d9", "size": 8, "opacity": 0.6}),
        (INFEASIBLE, {"color": "#888888", "size": 9, "symbol": "x", "opacity": 0.6}),
        (DOMINATED, {"size": 9, "opacity": 0.35, "showscale": False, **colour_axis}),
        (FRONT, {"size": 14, "opacity": 1.0, "line": {"color": "#d62728", "width": 2.5},
                 "showscale": True, "colorbar": {"title": {"text": LABELS[colour]}},
                 **colour_axis}),
    ]
    for status, marker in layers:
        rows = done[done["plot_status"] == status]
        if status == FRONT:
            rows = rows.sort_values([x_metric, "trial"])
        if "colorscale" in marker:
            marker = {**marker, "color": rows[colour].tolist()}
        line = x_metric == "latency_ms" and status == FRONT and len(objectives) == 2
        fig.add_trace(go.Scatter(
            x=rows[x_metric].tolist(), y=rows["accuracy"].tolist(),
            customdata=rows["trial"].tolist(), name=f"{status} ({len(rows)})",
            mode="lines+markers" if line else "markers", marker=marker,
            line={"shape": "hv", "color": "#d62728", "width": 1.5} if line else None,
            text=_hover(rows), hovertemplate="%{text}<extra></extra>",
        ))
    marked = [*([selected] if selected is not None else []), *(compared or [])]
    picks = done[done["trial"].isin(marked)]
    if not picks.empty:
        fig.add_trace(go.Scatter(
            x=picks[x_metric].tolist(), y=picks["accuracy"].tolist(),
            customdata=picks["trial"].tolist(), mode="markers+text", name="selected",
            text=[f"#{n}" for n in picks["trial"]], textposition="top center",
            marker={"size": 22, "color": "rgba(0,0,0,0)", "line": {"color": "#111", "width": 2}},
            hoverinfo="skip",
        ))
    if latency_budget is not None and x_metric == "latency_ms":
        fig.add_vline(x=latency_budget, line={"dash": "dot", "color": "#999"})
    if min_accuracy:
        fig.add_hline(y=min_accuracy, line={"dash": "dot", "color": "#999"})
    return fig


def confusion_figure(matrix: list[list[int]]) -> go.Figure:
    z = np.asarray(matrix, dtype=int)
    labels = [str(i) for i in range(z.shape[1])]
    fig = go.Figure(go.Heatmap(z=z.tolist(), x=labels, y=labels[: z.shape[0]],
                               colorscale="Blues", text=z.tolist(), texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(template="plotly_white", height=330, margin={"l": 50, "r": 10, "t": 10,
                                                                   "b": 40},
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")
    return fig


def layer_latency_figure(layers: dict[str, float]) -> go.Figure:
    names, ms = list(layers), [float(v) for v in layers.values()]
    fig = go.Figure(go.Bar(x=ms, y=names, orientation="h",
                           hovertemplate="%{y}: %{x:.4g} ms<extra></extra>"))
    fig.update_layout(template="plotly_white", height=max(160, 22 * len(names) + 60),
                      margin={"l": 10, "r": 10, "t": 10, "b": 40}, xaxis_title="ms",
                      yaxis={"autorange": "reversed", "automargin": True})
    return fig


# ---------------------------------------------------------------- panels


def _kv_table(pairs: list[tuple[str, Any]], cls: str = "kv") -> html.Table:
    return html.Table([html.Tr([html.Th(k), html.Td(_num(v), className="num")])
                       for k, v in pairs], className=cls)


def details_children(trial: FrozenTrial | None) -> list[Any]:
    """Everything about one trial; the confusion matrix says so when it was not recorded."""
    if trial is None:
        return [html.P("Click a point (or a table row) to see its details.", className="empty")]
    attrs = trial.user_attrs
    values = dict(zip(("accuracy", "latency_ms"), trial.values or (), strict=False))
    metrics = [(LABELS[m], values.get(m, attrs.get(m))) for m in METRICS
               if m != ENERGY_COLUMN or attrs.get(m) is not None]
    metrics.append(("weight sparsity", attrs.get("weight_sparsity")))
    metrics += _arithmetic_rows(attrs)
    out: list[Any] = [
        html.H3(f"Trial {trial.number}", id="details-title"),
        html.Div([html.Span(f"{trial.state.name} · "), html.Code(attrs.get("arch", "n/a"),
                                                                  className="arch",
                                                                  id="details-arch")]),
        html.H4("Metrics"), _kv_table(metrics),
        html.H4("Compression choices"), _kv_table(sorted(trial.params.items())),
        html.H4("Confusion matrix (validation)"),
    ]
    confusion = attrs.get("confusion")
    if confusion:
        out.append(dcc.Graph(id="confusion", figure=confusion_figure(confusion),
                             config={"displayModeBar": False}))
    else:
        out.append(html.P("not recorded", id="confusion-missing", className="empty"))
    layer_ms = attrs.get("layer_latency_ms")
    if layer_ms:
        out += [html.H4("Per-layer latency"),
                dcc.Graph(id="layer-latency", figure=layer_latency_figure(layer_ms),
                          config={"displayModeBar": False})]
    return out


def _arithmetic_rows(attrs: dict[str, Any]) -> list[tuple[str, Any]]:
    """Whose int8 arithmetic the accuracy is, on which CPU, and the weight range shipped."""
    rows: list[tuple[str, Any]] = []
    if attrs.get("accuracy_method"):
        rows.append(("accuracy computed by", attrs["accuracy_method"]))
    cpu = attrs.get("cpu")
    if cpu:
        rows.append(("scoring CPU", CpuInfo.from_dict(cpu).describe()))
    if "int8" in (attrs.get("quantization") or {}).get("realised", {}):
        reduced = (attrs.get("candidate") or {}).get("reduce_range", False)
        rows.append(("int8 weights", "7 bits (reduce range)" if reduced else "8 bits"))
    return rows


def comparison_children(frame: pd.DataFrame, numbers: list[int] | None) -> list[Any]:
    """Side-by-side metrics and choices; rows whose values differ are highlighted."""
    rows = frame.set_index("trial")
    numbers = [n for n in (numbers or []) if n in rows.index]
    if len(numbers) < 2:
        return [html.P("Pick two or three trials to compare them side by side.",
                       className="empty")]
    fields = [*_metrics(frame), "arch", *[c for c in choice_columns(frame) if c in rows.columns]]
    body = []
    for field in fields:
        cells = [rows.at[n, field] for n in numbers]
        shown = [_num(v) for v in cells]
        body.append(html.Tr([html.Th(LABELS.get(field, field)),
                             *[html.Td(s, className="num") for s in shown]],
                            className="differs" if len(set(shown)) > 1 else ""))
    head = html.Tr([html.Th(""), *[html.Th(f"trial {n}") for n in numbers]])
    return [html.Table([html.Thead(head), html.Tbody(body)], className="kv", id="compare-table")]


def problems_children(frame: pd.DataFrame) -> list[Any]:
    """Failed, pruned and infeasible trials with the reason each one is off the front."""
    out = frame[frame["reason"].notna() & (frame["state"] != "RUNNING")]
    if out.empty:
        return [html.P("None so far.")]
    return [html.Table(
        [html.Tr([html.Th("trial"), html.Th("state"), html.Th("reason")])]
        + [html.Tr([html.Td(r.trial), html.Td("INFEASIBLE" if r.state == "COMPLETE" else r.state),
                    html.Td(r.reason)]) for r in out.itertuples()],
        className="kv", id="problems-table")]


def table_rows(frame: pd.DataFrame, latency_budget: float | None,
               min_accuracy: float | None) -> tuple[list[dict], list[dict]]:
    """Rows and columns of the sortable table of completed trials."""
    done = frame[frame["state"] == "COMPLETE"].copy()
    done.insert(1, "status", trial_status(done, latency_budget, min_accuracy))
    cols = ["trial", "status", *METRICS, "arch", *choice_columns(frame), "duration_s"]
    cols = [c for c in cols if c in done.columns]
    done["id"] = done["trial"]
    records = json.loads(done[[*cols, "id"]].to_json(orient="records", double_precision=6))
    numeric = set(METRICS) | {"trial", "duration_s"}
    columns = [{"name": LABELS.get(c, c), "id": c,
                "type": "numeric" if c in numeric or pd.api.types.is_numeric_dtype(done[c])
                else "text"} for c in cols]
    return records, columns


def latency_slider(frame: pd.DataFrame, value: float | None,
                   old_max: float | None) -> tuple[float, float, float, dict]:
    """(max, step, value, marks): the slider spans all latencies; at its max it filters nothing.

    A handle left at the old maximum follows the maximum as slower trials arrive, so "no budget"
    stays no budget while the search runs.
    """
    lat = frame.loc[frame["state"] == "COMPLETE", "latency_ms"].dropna()
    top = float(lat.max()) if len(lat) else 1.0
    step = 10.0 ** math.floor(math.log10(top / 100)) if top > 0 else 0.001
    new_max = math.ceil(top / step) * step
    new_max = float(f"{new_max:.10g}")
    if value is None or old_max is None or value >= old_max - step / 2:
        value = new_max
    marks = {0: "0", new_max: f"{new_max:g} ms"}
    return new_max, step, min(value, new_max), marks


# ---------------------------------------------------------------- app


def _layout(title: str, refresh_s: float, x_axes: tuple[str, ...] = X_AXES) -> html.Div:
    return html.Div([
        html.H1(title),
        html.Div(id="counts", className="counts"),
        html.Div([
            html.Div([html.Label("Latency budget (ms)"),
                      dcc.Slider(id="latency-budget", min=0, max=1, step=0.01, value=None,
                                 marks=None, tooltip={"placement": "bottom"})]),
            html.Div([html.Label("Minimum accuracy"),
                      dcc.Slider(id="min-accuracy", min=0, max=1, step=0.01, value=0,
                                 marks={0: "0", 0.5: "0.5", 0.9: "0.9", 1: "1"},
                                 tooltip={"placement": "bottom"})]),
            html.Div([html.Label("x axis"),
                      dcc.Dropdown(id="x-axis", value="latency_ms", clearable=False,
                                   options=[{"label": LABELS[m], "value": m} for m in x_axes])]),
        ], className="controls"),
        html.Div([
            html.Div([dcc.Graph(id="front", config={"displaylogo": False})], className="plot"),
            html.Div([
                html.Button("Export", id="export-button", disabled=True),
                html.Button("Add to comparison", id="compare-add", disabled=True),
                dcc.Checklist(id="export-force", value=[], inline=True,
                              options=[{"label": " replace an earlier export", "value": "force"}]),
                dcc.Loading(html.Div(id="export-status")),
                html.Div(id="details", children=details_children(None)),
            ], className="side"),
        ], className="main"),
        html.H2("Compare"),
        dcc.Dropdown(id="compare", multi=True, options=[], value=[],
                     placeholder=f"up to {MAX_COMPARE} trial numbers"),
        html.Div(id="comparison"),
        html.H2("Completed trials"),
        dash_table.DataTable(id="trials-table", sort_action="native", filter_action="native",
                             page_size=15, style_table={"overflowX": "auto"},
                             style_cell={"fontSize": "0.8rem", "padding": "2px 6px",
                                         "maxWidth": "22rem", "overflow": "hidden",
                                         "textOverflow": "ellipsis"},
                             style_data_conditional=[
                                 {"if": {"filter_query": f'{{status}} = "{FILTERED}"'},
                                  "color": "#aaa"},
                                 {"if": {"filter_query": f'{{status}} = "{INFEASIBLE}"'},
                                  "color": "#888", "fontStyle": "italic"},
                                 {"if": {"filter_query": f'{{status}} = "{FRONT}"'},
                                  "fontWeight": "600"},
                             ]),
        html.H2("Failed and infeasible trials"),
        html.Div(id="problems"),
        dcc.Store(id="trials-data"),
        dcc.Store(id="selected-trial"),
        dcc.Interval(id="refresh", interval=int(refresh_s * 1000)),
    ])


def export_message(source: StudySource, trial_number: int, export_dir: Path,
                   force: bool = False) -> html.Div:
    """Export as ``edgeshrink export --trial N`` does; a problem is shown, never a crash."""
    try:
        from edgeshrink.reports.export import export_trial
    except ImportError as exc:
        return html.Div(f"export is not available in this install: {exc}", className="error",
                        id="export-error")
    try:
        out_dir = inside(export_dir, f"trial_{trial_number}")  # the number comes from the browser
        result = export_trial(source.study, trial_number, out_dir, run_dir=source.run_dir,
                              force=force, reason=f"trial {trial_number}, picked in the dashboard")
    except EdgeshrinkError as exc:
        return html.Div(f"export of trial {trial_number} failed: {exc}", className="error",
                        id="export-error")
    return html.Div([
        html.Span(f"Exported trial {trial_number} to "), html.Code(str(result.out_dir),
                                                                   id="export-dir"),
        html.Div(f"validation accuracy {result.val_accuracy:.4f}, "
                 f"test accuracy {result.test_accuracy:.4f}"),
        html.Ul([html.Li(f) for f in result.files], id="export-files"),
    ], className="ok", id="export-done")


def make_app(study_name: str, run_dir: Path | None = None, storage: str | None = None,
             export_dir: Path | None = None, refresh_s: float = REFRESH_S) -> dash.Dash:
    """The dashboard for one existing study; raises EdgeshrinkError if it cannot be opened."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(study_name)
    export_dir = Path(export_dir) if export_dir is not None else run_dir / "exports"
    source = StudySource(study_name, run_dir, storage)
    app = dash.Dash(__name__, title=f"edgeshrink: {study_name}", update_title=None)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + _CSS + "</style>")
    # An energy axis only for studies that optimize (or had already recorded) energy.
    app.layout = _layout(f"edgeshrink dashboard: {study_name}", refresh_s,
                         tuple(_metrics(source.frame(), X_AXES)))

    @app.callback(Output("trials-data", "data"), Input("refresh", "n_intervals"),
                  State("trials-data", "data"))
    def refresh(_n: int | None, current: dict | None) -> Any:
        data = to_store(source.frame())
        return dash.no_update if data == current else data

    @app.callback(Output("latency-budget", "max"), Output("latency-budget", "step"),
                  Output("latency-budget", "value"), Output("latency-budget", "marks"),
                  Input("trials-data", "data"), State("latency-budget", "value"),
                  State("latency-budget", "max"))
    def slider(data: dict | None, value: float | None, old_max: float | None) -> Any:
        return latency_slider(from_store(data), value, old_max if value is not None else None)

    @app.callback(Output("front", "figure"), Output("counts", "children"),
                  Output("trials-table", "data"), Output("trials-table", "columns"),
                  Input("trials-data", "data"), Input("latency-budget", "value"),
                  Input("min-accuracy", "value"), Input("x-axis", "value"),
                  Input("selected-trial", "data"), Input("compare", "value"))
    def render(data: dict | None, budget: float | None, min_acc: float | None, x_metric: str,
               selected: int | None, compared: list[int] | None) -> Any:
        frame = from_store(data)
        rows, columns = table_rows(frame, budget, min_acc)
        return (front_figure(frame, budget, min_acc, x_metric, selected, compared),
                counts_text(frame, budget, min_acc), rows, columns)

    @app.callback(Output("problems", "children"), Output("compare", "options"),
                  Input("trials-data", "data"))
    def lists(data: dict | None) -> Any:
        frame = from_store(data)
        done = frame.loc[frame["state"] == "COMPLETE", "trial"].tolist()
        return problems_children(frame), [{"label": f"trial {n}", "value": n} for n in done]

    @app.callback(Output("selected-trial", "data"), Input("front", "clickData"),
                  Input("trials-table", "active_cell"), prevent_initial_call=True)
    def select(click: dict | None, cell: dict | None) -> Any:
        if dash.ctx.triggered_id == "front" and click and click.get("points"):
            return click["points"][0].get("customdata", dash.no_update)
        if dash.ctx.triggered_id == "trials-table" and cell and cell.get("row_id") is not None:
            return cell["row_id"]
        return dash.no_update

    @app.callback(Output("details", "children"), Output("export-button", "disabled"),
                  Output("compare-add", "disabled"), Input("selected-trial", "data"))
    def details(number: int | None) -> Any:
        trial = source.trial(number) if number is not None else None
        return details_children(trial), trial is None, trial is None

    @app.callback(Output("compare", "value"), Input("compare-add", "n_clicks"),
                  Input("compare", "value"), State("selected-trial", "data"),
                  prevent_initial_call=True)
    def compare(_clicks: int | None, value: list[int] | None, selected: int | None) -> Any:
        value = list(value or [])
        if dash.ctx.triggered_id == "compare-add" and selected is not None:
            value = [n for n in value if n != selected] + [selected]
        return value[-MAX_COMPARE:]

    @app.callback(Output("comparison", "children"), Input("compare", "value"),
                  Input("trials-data", "data"))
    def comparison(numbers: list[int] | None, data: dict | None) -> Any:
        return comparison_children(from_store(data), numbers)

    @app.callback(Output("export-status", "children"), Input("export-button", "n_clicks"),
                  State("selected-trial", "data"), State("export-force", "value"),
                  prevent_initial_call=True)
    def export(clicks: int | None, number: int | None, force: list[str] | None) -> Any:
        if not clicks or number is None:
            return dash.no_update
        return export_message(source, number, export_dir, force="force" in (force or []))

    return app


def serve(study_name: str, run_dir: Path | None = None, storage: str | None = None,
          export_dir: Path | None = None, host: str = "127.0.0.1", port: int = 8050,
          refresh_s: float = REFRESH_S) -> None:
    """Build the app (failing fast on a missing study or a busy port) and serve it until Ctrl+C."""
    if not refresh_s > 0:
        raise EdgeshrinkError(f"--refresh must be positive seconds, got {refresh_s}")
    _check_port(host, port)
    app = make_app(study_name, run_dir, storage, export_dir, refresh_s)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per refresh request
    print(f"dashboard for study {study_name!r}: http://{host}:{port}/ (Ctrl+C to stop)",
          flush=True)
    app.run(host=host, port=port, debug=False)


def _check_port(host: str, port: int) -> None:
    """Werkzeug would print two lines and exit 1 on a busy port; give the usual one-line error."""
    try:
        with socket.create_server((host, port), reuse_port=False) as _:
            pass
    except OSError as exc:
        why = (exc.strerror or str(exc)).split(" (")[0]
        raise EdgeshrinkError(f"cannot listen on {host}:{port}: {why}; "
                              "pick another --port") from None
