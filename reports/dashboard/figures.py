"""The dashboard's plotly figures: the front, a confusion matrix, per-layer latency.

The front figure shares the report's marks (``reports.plotting``): a marker per model family, the
uncompressed base model as a star, and a y axis fitted to the front with outliers pinned below.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from edgeshrink.reports.dashboard.data import (
    DOMINATED,
    EMPTY_TEXT,
    FILTERED,
    FRONT,
    INFEASIBLE,
    LABELS,
    in_families,
    trial_status,
)
from edgeshrink.reports.frame import (
    ENERGY_COLUMN,
    OBJECTIVES,
    base_reference,
    frame_objectives,
)
from edgeshrink.reports.plotting import (
    REFERENCE_NAME,
    REFERENCE_STYLE,
    accuracy_range,
    emphasise,
    families,
    family_key,
    pin,
    pinned_note,
    symbols,
)

FILTERED_OUT_TEXT = "No completed trial of the chosen model families."


def number_text(value: Any, digits: int = 4) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}g}"
    if isinstance(value, (int, float, np.integer)):
        return f"{int(value):,}"
    return str(value)


def _hover(rows: pd.DataFrame, show_family: bool = False) -> list[str]:
    energy = ENERGY_COLUMN in rows.columns
    return [
        f"<b>trial {r.trial}</b> ({r.plot_status}{f', {r.family}' if show_family else ''})"
        f"<br>{r.arch}"
        + (f"<br>{pinned_note(r.accuracy)}" if r.pinned
           else f"<br>accuracy {number_text(r.accuracy)}")
        + f"<br>latency {number_text(r.latency_ms)} ms"
        + (f"<br>energy {number_text(getattr(r, ENERGY_COLUMN))} mJ" if energy else "")
        + f"<br>size {number_text(r.size_bytes)} B"
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


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper",
                       x=0.5, y=0.5, font={"size": 15, "color": "#666"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def front_figure(frame: pd.DataFrame, latency_budget: float | None = None,
                 min_accuracy: float | None = None, x_metric: str = "latency_ms",
                 selected: int | None = None, compared: list[int] | None = None,
                 model_families: list[str] | None = None, log_x: bool = False) -> go.Figure:
    """Accuracy against ``x_metric``, coloured by :func:`colour_metric`, a marker per family.

    The front is joined by a step line only when x is latency and the study has two objectives.
    ``model_families`` hides the other families' points (statuses stay the study's: a hidden base
    point still dominates); ``log_x`` puts x on a log scale.
    """
    fig = go.Figure()
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 30, "b": 50},
                      height=480, uirevision="keep-zoom", hovermode="closest",
                      legend={"orientation": "h", "y": -0.18},
                      yaxis_title=LABELS["accuracy"], xaxis_title=LABELS[x_metric])
    all_done = frame[frame["state"] == "COMPLETE"]
    done = in_families(all_done, model_families).copy()
    if done.empty:
        return _empty(fig, FILTERED_OUT_TEXT if len(all_done) else EMPTY_TEXT)
    done["plot_status"] = trial_status(done, latency_budget, min_accuracy)
    yrange = accuracy_range(done.loc[done["pareto"], "accuracy"], done["accuracy"])
    done["plot_y"], done["pinned"] = pin(done["accuracy"], yrange)
    show_family = families(frame) != ["student"]
    objectives = frame_objectives(frame)
    colour = colour_metric(objectives, x_metric)
    cmin, cmax = float(done[colour].min()), float(done[colour].max())
    colour_axis = {"colorscale": "Viridis", "cmin": cmin, "cmax": max(cmax, cmin + 1e-9)}
    layers = [
        (FILTERED, {"color": "#d9d9d9", "size": 8, "opacity": 0.6}),
        (INFEASIBLE, {"color": "#888888", "size": 9, "opacity": 0.6}),
        (DOMINATED, {"size": 9, "opacity": 0.35, "showscale": False, **colour_axis}),
        (FRONT, {"size": 14, "opacity": 1.0, "line": {"color": "#d62728", "width": 2.5},
                 "showscale": True, "colorbar": {"title": {"text": LABELS[colour]}},
                 **colour_axis}),
    ]
    for status, marker in layers:
        rows = done[done["plot_status"] == status]
        if status == FRONT:
            rows = rows.sort_values([x_metric, "trial"])
        marker = emphasise({**marker, "symbol": symbols(rows["family"], rows["pinned"],
                                                        crossed=status == INFEASIBLE)},
                           rows["pinned"])
        if "colorscale" in marker:
            marker["color"] = rows[colour].tolist()
        line = x_metric == "latency_ms" and status == FRONT and len(objectives) == 2
        fig.add_trace(go.Scatter(
            x=rows[x_metric].tolist(), y=rows["plot_y"].tolist(),
            customdata=rows["trial"].tolist(), name=f"{status} ({len(rows)})",
            mode="lines+markers" if line else "markers", marker=marker,
            line={"shape": "hv", "color": "#d62728", "width": 1.5} if line else None,
            text=_hover(rows, show_family), hovertemplate="%{text}<extra></extra>",
            cliponaxis=not rows["pinned"].any(),  # a pinned marker sits on the edge
        ))
    ref = done[done["trial"] == base_reference(frame)]
    if not ref.empty:
        fig.add_trace(go.Scatter(
            x=ref[x_metric].tolist(), y=ref["plot_y"].tolist(), customdata=ref["trial"].tolist(),
            name=f"{REFERENCE_NAME} (trial {ref['trial'].iloc[0]})", mode="markers",
            marker={**REFERENCE_STYLE, "symbol": ["star-open" if p else "star"
                                                  for p in ref["pinned"]]},
            text=_hover(ref, show_family), hovertemplate="%{text}<extra></extra>",
            cliponaxis=False))
    fig.add_traces(family_key(done))
    marked = [*([selected] if selected is not None else []), *(compared or [])]
    picks = done[done["trial"].isin(marked)]
    if not picks.empty:
        fig.add_trace(go.Scatter(
            x=picks[x_metric].tolist(), y=picks["plot_y"].tolist(),
            customdata=picks["trial"].tolist(), mode="markers+text", name="selected",
            text=[f"#{n}" for n in picks["trial"]], textposition="top center",
            marker={"size": 22, "color": "rgba(0,0,0,0)", "line": {"color": "#111", "width": 2}},
            hoverinfo="skip", cliponaxis=False,
        ))
    if latency_budget is not None and x_metric == "latency_ms":
        fig.add_vline(x=latency_budget, line={"dash": "dot", "color": "#999"})
    if min_accuracy:
        fig.add_hline(y=min_accuracy, line={"dash": "dot", "color": "#999"})
    if yrange is not None:
        fig.update_yaxes(range=yrange)
        fig.update_xaxes(ticklabelstandoff=8)  # room for markers pinned on the bottom edge
    if log_x:
        fig.update_xaxes(type="log")
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
