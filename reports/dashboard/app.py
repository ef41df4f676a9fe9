"""Wiring: the Dash layout, its callbacks, the export action and the server."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, State, dash_table, dcc, html

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.reports.dashboard.data import (
    FILTERED,
    FRONT,
    INFEASIBLE,
    LABELS,
    MAX_COMPARE,
    REFRESH_S,
    X_AXES,
    StudySource,
    counts_text,
    family_filter_style,
    from_store,
    in_families,
    present_metrics,
    to_store,
)
from edgeshrink.reports.dashboard.figures import front_figure
from edgeshrink.reports.dashboard.panels import (
    comparison_children,
    details_children,
    latency_slider,
    problems_children,
    table_rows,
)
from edgeshrink.reports.frame import BASE, STUDENT
from edgeshrink.reports.paths import inside
from edgeshrink.search.options import DASHBOARD_HOST, DASHBOARD_PORT
from edgeshrink.search.study import resolve_run_dir


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
                                   options=[{"label": LABELS[m], "value": m} for m in x_axes]),
                      dcc.Checklist(id="log-x", value=[], inline=True,
                                    options=[{"label": " log latency axis", "value": "log"}])]),
            html.Div([html.Label("Model families"),
                      dcc.Checklist(id="family-filter", value=list(FAMILIES), inline=True,
                                    options=[{"label": f" {f}", "value": f} for f in FAMILIES])],
                     id="family-filter-box", style={"display": "none"}),
        ], className="controls"),
        html.Div([
            html.Div([dcc.Graph(id="front", config={"displaylogo": False})], className="plot"),
            html.Div([
                html.Button("Export", id="export-button", disabled=True),
                html.Button("Add to comparison", id="compare-add", disabled=True),
                dcc.Checklist(id="export-format", value=["onnx"], inline=True,
                              options=[{"label": " ONNX", "value": "onnx"},
                                       {"label": " TFLite (LiteRT)", "value": "tflite"}]),
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
                   force: bool = False, formats: list[str] | tuple[str, ...] = ("onnx",)
                   ) -> html.Div:
    """Export as ``edgeshrink export --trial N --format ...`` does; a problem is shown, never a
    crash. A ``.tflite`` refused beside a written ONNX export is shown under the files."""
    try:
        from edgeshrink.reports.export import export_trial
    except ImportError as exc:
        return html.Div(f"export is not available in this install: {exc}", className="error",
                        id="export-error")
    try:
        out_dir = inside(export_dir, f"trial_{trial_number}")  # the number comes from the browser
        result = export_trial(source.study, trial_number, out_dir, run_dir=source.run_dir,
                              force=force, reason=f"trial {trial_number}, picked in the dashboard",
                              formats=tuple(formats))
    except EdgeshrinkError as exc:
        return html.Div(f"export of trial {trial_number} failed: {exc}", className="error",
                        id="export-error")
    return html.Div([
        html.Span(f"Exported trial {trial_number} to "), html.Code(str(result.out_dir),
                                                                   id="export-dir"),
        html.Div(f"validation accuracy {result.val_accuracy:.4f}, "
                 f"test accuracy {result.test_accuracy:.4f}"),
        html.Ul([html.Li(f) for f in result.files], id="export-files"),
        *([html.Div([html.Div(f"{f['file']}: {f['size_bytes']:,} bytes, validation accuracy "
                              f"{f['validation_accuracy']:.4f} ({f['check']})")
                     for f in result.tflite], id="export-tflite")] if result.tflite else []),
        *([html.Div(f"no .tflite: {result.tflite_refused}", className="error",
                    id="export-tflite-refused")] if result.tflite_refused else []),
    ], className="ok", id="export-done")


FAMILIES = (BASE, STUDENT)  # the family filter's choices
ASSETS = Path(__file__).with_name("assets")  # dashboard.css, served by Dash


def make_app(study_name: str, run_dir: Path | None = None, storage: str | None = None,
             export_dir: Path | None = None, refresh_s: float = REFRESH_S) -> dash.Dash:
    """The dashboard for one existing study; raises EdgeshrinkError if it cannot be opened."""
    run_dir = resolve_run_dir(study_name, run_dir)
    export_dir = Path(export_dir) if export_dir is not None else run_dir / "exports"
    source = StudySource(study_name, run_dir, storage)
    app = dash.Dash(__name__, title=f"edgeshrink: {study_name}", update_title=None,
                    assets_folder=str(ASSETS))
    # An energy axis only for studies that optimize (or had already recorded) energy.
    app.layout = _layout(f"edgeshrink dashboard: {study_name}", refresh_s,
                         tuple(present_metrics(source.frame(), X_AXES)))

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
                  Input("selected-trial", "data"), Input("compare", "value"),
                  Input("family-filter", "value"), Input("log-x", "value"))
    def render(data: dict | None, budget: float | None, min_acc: float | None, x_metric: str,
               selected: int | None, compared: list[int] | None, chosen: list[str] | None,
               log_x: list[str] | None) -> Any:
        frame = from_store(data)
        # The checklist is hidden (and ignored) while the study holds a single family.
        chosen = list(chosen or []) if family_filter_style(frame) == {} else None
        rows, columns = table_rows(in_families(frame, chosen), budget, min_acc)
        return (front_figure(frame, budget, min_acc, x_metric, selected, compared, chosen,
                             "log" in (log_x or [])),
                counts_text(frame, budget, min_acc), rows, columns)

    @app.callback(Output("problems", "children"), Output("compare", "options"),
                  Output("family-filter-box", "style"), Input("trials-data", "data"))
    def lists(data: dict | None) -> Any:
        frame = from_store(data)
        done = frame.loc[frame["state"] == "COMPLETE", "trial"].tolist()
        return (problems_children(frame), [{"label": f"trial {n}", "value": n} for n in done],
                family_filter_style(frame))

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
                  State("export-format", "value"), prevent_initial_call=True)
    def export(clicks: int | None, number: int | None, force: list[str] | None,
               formats: list[str] | None) -> Any:
        if not clicks or number is None:
            return dash.no_update
        return export_message(source, number, export_dir, force="force" in (force or []),
                              formats=formats or [])

    return app


def serve(study_name: str, run_dir: Path | None = None, storage: str | None = None,
          export_dir: Path | None = None, host: str = DASHBOARD_HOST, port: int = DASHBOARD_PORT,
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
