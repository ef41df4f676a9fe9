"""A single self-contained HTML page: the trade-off plot and the short list of best trials.

Everything (plotly.js included) is inlined so the file can be mailed or opened offline.

The main plot is always accuracy against latency. A study with more objectives (``--objectives
accuracy,latency,energy``) colours the points by the first extra objective and adds one plot of
accuracy against each extra objective: its front is not a staircase in any 2-D view (a point
beaten on accuracy and latency may be the most frugal), so no step line is drawn there.

Each point's marker says its family (circle: searched student, diamond: the user's model
compressed; the uncompressed base model is a star), the y axis starts just below the front
(outliers pinned to its edge, see ``plotting``) and buttons switch the x axis to a log scale.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from edgeshrink.core.metrics import spec_by_key
from edgeshrink.reports.frame import (
    BASE_COLUMNS,
    OBJECTIVES,
    base_reference,
    choice_columns,
    frame_objectives,
    metric_columns,
    pareto_frame,
)
from edgeshrink.reports.plotting import (
    REFERENCE_NAME,
    REFERENCE_STYLE,
    accuracy_range,
    emphasise,
    family_counts,
    family_key,
    log_buttons,
    pin,
    pinned_note,
    symbols,
)
from edgeshrink.reports.reference import compare_to_reference, reference_text, tradeoff_text

_AXES = {"accuracy": "validation accuracy (higher is better)",
         "latency_ms": "latency (ms, lower is better)"}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; }
.counts { color: #555; }
.reference { color: #1f4e79; }
.empty { padding: 2rem; background: #f6f6f6; color: #666; }
"""


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any) -> str:
    if _missing(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _size(value: Any) -> str:
    if _missing(value):
        return "n/a"
    size = float(value)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


def _versus_base(row: dict[str, Any]) -> list[str]:
    """Family and cost against the base model, in studies that compress the user's model."""
    if "acc_vs_base" not in row:
        return []
    speed, acc = row["speedup_vs_base"], row["acc_vs_base"]
    gain = "" if _missing(speed) else f", {speed:.2f}x its speed"
    return [f"family: {row['family']}",
            *([] if _missing(acc) else [f"vs base model: {acc:+.4f} accuracy{gain}"])]


def _hover(frame: pd.DataFrame, choices: list[str], pinned: Any = None) -> list[str]:
    """Per-point hover text; escaped because arch strings and choices end up inside the page."""
    texts = []
    low = [False] * len(frame) if pinned is None else list(pinned)
    for row, pinned_here in zip(frame.to_dict("records"), low, strict=True):
        accuracy = (pinned_note(row["accuracy"]) if pinned_here
                    else f"accuracy: {_fmt(row['accuracy'])}")
        lines = [
            f"trial {row['trial']}",
            _fmt(row["arch"]),
            *_versus_base(row),
            accuracy,
            f"latency: {_fmt(row['latency_ms'])} ms",
            *([f"energy: {_fmt(row['energy_mj'])} mJ"] if "energy_mj" in row else []),
            f"size: {_size(row['size_bytes'])}",
            *(f"{c}: {_fmt(row[c])}" for c in choices),
        ]
        escaped = [html.escape(line, quote=False) for line in lines]
        texts.append("<br>".join([f"<b>{escaped[0]}</b>", *escaped[1:]]))
    return texts


def _label(key: str) -> str:
    spec = spec_by_key(key)
    return spec.label if spec else key


def _axis_title(key: str) -> str:
    spec = spec_by_key(key)
    better = "higher" if spec is not None and spec.maximize else "lower"
    return _AXES.get(key) or f"{_label(key)}, {better} is better"


def _scatter(frame: pd.DataFrame, choices: list[str], name: str, x: str = "latency_ms",
             yrange: list[float] | None = None, crossed: bool = False,
             **style: Any) -> go.Scatter:
    """One layer; markers by family, points below ``yrange`` pinned to its bottom, hollow."""
    y, pinned = pin(frame["accuracy"], yrange)
    marker = emphasise({**style.pop("marker", {}),
                        "symbol": symbols(frame["family"], pinned, crossed)}, pinned)
    return go.Scatter(
        x=frame[x].tolist(),
        y=y,
        name=name,
        text=_hover(frame, choices, pinned),
        hovertemplate="%{text}<extra></extra>",
        marker=marker,
        cliponaxis=not pinned.any(),  # a pinned marker sits on the edge: draw it whole
        **style,
    )


def _add_base(fig: go.Figure, frame: pd.DataFrame, choices: list[str], x: str,
              yrange: list[float] | None) -> None:
    """The uncompressed base model (the search's first trial) as a star over its own point."""
    ref = frame[(frame["trial"] == base_reference(frame)) & frame[x].notna()]
    if ref.empty:
        return
    trace = _scatter(ref, choices, f"{REFERENCE_NAME} (trial {ref['trial'].iloc[0]})", x,
                     yrange, mode="markers", marker=dict(REFERENCE_STYLE))
    trace.marker.symbol = ["star-open" if s.endswith("-open") else "star"
                           for s in trace.marker.symbol]
    fig.add_trace(trace)


def _add_reference(fig: go.Figure, reference: dict[str, Any], x: str = "latency_ms") -> None:
    """The teacher as a star (and a dotted line at its accuracy): the point compressed from."""
    acc, lat = reference.get("accuracy"), reference.get(x)
    if _missing(acc):
        return
    fig.add_hline(y=acc, line={"dash": "dot", "color": "#1f77b4"},
                  annotation_text="teacher accuracy", annotation_position="bottom right")
    if not _missing(lat):
        fig.add_trace(go.Scatter(
            x=[lat], y=[acc], name="teacher (reference)", mode="markers",
            marker={"color": "#1f77b4", "size": 14, "symbol": "star"},
            text=[html.escape(reference_text(reference), quote=False)],
            hovertemplate="%{text}<extra></extra>",
        ))


def _front_style(frame: pd.DataFrame, x: str) -> dict[str, Any]:
    """A staircase for two objectives; with more, markers coloured by the first extra one."""
    extra = [k for k in frame_objectives(frame) if k not in OBJECTIVES]
    if not extra:
        return {"mode": "lines+markers", "line": {"shape": "hv", "color": "#d62728"},
                "marker": {"color": "#d62728", "size": 10}}
    colour = next((k for k in extra if k != x), "latency_ms")
    return {"marker": {"size": 11, "color": pareto_frame(frame)[colour].tolist(),
                       "colorscale": "Viridis", "line": {"color": "#d62728", "width": 2},
                       "colorbar": {"title": {"text": _label(colour)}}}}


def report_figure(frame: pd.DataFrame, title: str, reference: dict[str, Any] | None = None,
                  x: str = "latency_ms") -> go.Figure:
    """Accuracy against ``x`` for a ``trials_frame``: the front on top, a marker per family."""
    choices = choice_columns(frame)
    done = frame[frame["state"] == "COMPLETE"]
    rest = done[~done["pareto"]]
    front = pareto_frame(frame)
    names = frame_objectives(frame)
    teacher = (reference or {}).get("accuracy")
    yrange = accuracy_range(front["accuracy"], [*done["accuracy"],
                                                *([] if _missing(teacher) else [teacher])])
    layers = [
        (rest[rest["feasible"]], "feasible", False, {"marker": {"color": "#bbbbbb", "size": 7}}),
        (rest[~rest["feasible"]], "infeasible", True, {"marker": {"color": "#999999", "size": 7}}),
        (front, "Pareto front" if len(names) == 2
         else f"Pareto front of {len(names)} objectives", False, _front_style(frame, x)),
    ]
    fig = go.Figure()
    for subset, name, crossed, style in layers:  # drawn in order, so the front sits on top
        fig.add_trace(_scatter(subset, choices, name, x, yrange, crossed,
                               **{"mode": "markers", **style}))
    _add_base(fig, frame, choices, x, yrange)
    fig.add_traces(family_key(done))
    if reference:
        _add_reference(fig, reference, x)
    fig.update_layout(
        title=title,
        xaxis_title=_axis_title(x),
        yaxis_title=_axis_title("accuracy"),
        template="plotly_white",
        hovermode="closest",
        updatemenus=log_buttons(_label(x)),
    )
    if yrange is not None:
        fig.update_yaxes(range=yrange)
        fig.update_xaxes(ticklabelstandoff=8)  # room for markers pinned on the bottom edge
    if len(names) > len(OBJECTIVES):  # the colour bar takes the legend's place on the right
        fig.update_layout(legend={"orientation": "h", "y": -0.15})
    return fig


def _plots(frame: pd.DataFrame, title: str, reference: dict[str, Any] | None) -> str:
    """Accuracy against latency, then against each extra objective; plotly.js inlined once."""
    extra = [k for k in frame_objectives(frame) if k not in OBJECTIVES]
    views = [("latency_ms", title)] + [(k, f"{title}: accuracy against {_label(k)}")
                                       for k in extra]
    return "\n".join(
        report_figure(frame, name, reference, x).to_html(
            full_html=False, include_plotlyjs=i == 0, default_width="100%",
            default_height="560px")
        for i, (x, name) in enumerate(views)
    )


def _counts(frame: pd.DataFrame) -> str:
    state = frame["state"]
    names = frame_objectives(frame)
    over = f" over {', '.join(names)}" if len(names) > len(OBJECTIVES) else ""
    per_family = family_counts(frame)
    return (
        f"{len(frame)} trials{f' ({per_family})' if per_family else ''}: "
        f"{(state == 'COMPLETE').sum()} complete, "
        f"{int(frame['feasible'].sum())} feasible, {(state == 'FAIL').sum()} failed, "
        f"{int(frame['pareto'].sum())} Pareto-optimal{over}"
    )


def _table(frame: pd.DataFrame, reference: dict[str, Any] | None = None) -> str:
    front = pareto_frame(frame)
    if front.empty:
        return '<p class="empty">No feasible completed trial yet, so no Pareto front.</p>'
    teacher = ["acc_vs_teacher", "speedup_vs_teacher"] if reference else []
    if reference:
        front = compare_to_reference(front, reference)
    base = [c for c in BASE_COLUMNS if c in front.columns]
    cols = ["trial", *metric_columns(frame), *teacher, "arch", "family", *base,
            *choice_columns(frame)]
    # Format cells ourselves: to_html's na_rep skips nullable ints and would print "<NA>".
    cells = front[cols].astype(object).map(lambda v: "" if _missing(v) else _fmt(v))
    return cells.to_html(index=False, escape=True, border=0, classes="pareto")


def render_html(frame: pd.DataFrame, title: str = "edgeshrink report",
                reference: dict[str, Any] | None = None) -> str:
    """Render a ``trials_frame`` as a complete HTML document; never fails on an empty study.

    ``reference`` is the teacher's record (study user attr ``teacher``): drawn as a star and
    compared with in a line and two table columns, so the page says what compression cost.
    """
    if (frame["state"] == "COMPLETE").any():
        plot = _plots(frame, title, reference)
    else:
        plot = '<p class="empty">No completed trials yet: nothing to plot.</p>'
    safe_title = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{safe_title}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{safe_title}</h1>
<p class="counts">{html.escape(_counts(frame))}</p>
<p class="reference">{html.escape(tradeoff_text(pareto_frame(frame), reference))}</p>
{plot}
<h2>Pareto-optimal trials</h2>
{_table(frame, reference)}
</body>
</html>
"""
