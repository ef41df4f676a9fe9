"""A single self-contained HTML page: the trade-off plot and the short list of best trials.

Everything (plotly.js included) is inlined so the file can be mailed or opened offline.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from edgeshrink.reports.frame import METRIC_COLUMNS, choice_columns, pareto_frame
from edgeshrink.reports.reference import compare_to_reference, reference_text, tradeoff_text

_TABLE_HEAD = ["trial", *METRIC_COLUMNS, "arch"]
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


def _hover(frame: pd.DataFrame, choices: list[str]) -> list[str]:
    """Per-point hover text; escaped because arch strings and choices end up inside the page."""
    texts = []
    for row in frame.to_dict("records"):
        lines = [
            f"trial {row['trial']}",
            _fmt(row["arch"]),
            f"accuracy: {_fmt(row['accuracy'])}",
            f"latency: {_fmt(row['latency_ms'])} ms",
            f"size: {_size(row['size_bytes'])}",
            *(f"{c}: {_fmt(row[c])}" for c in choices),
        ]
        escaped = [html.escape(line, quote=False) for line in lines]
        texts.append("<br>".join([f"<b>{escaped[0]}</b>", *escaped[1:]]))
    return texts


def _scatter(frame: pd.DataFrame, choices: list[str], name: str, **style: Any) -> go.Scatter:
    return go.Scatter(
        x=frame["latency_ms"].tolist(),
        y=frame["accuracy"].tolist(),
        name=name,
        text=_hover(frame, choices),
        hovertemplate="%{text}<extra></extra>",
        **style,
    )


def _add_reference(fig: go.Figure, reference: dict[str, Any]) -> None:
    """The teacher as a star (and a dotted line at its accuracy): the point compressed from."""
    acc, lat = reference.get("accuracy"), reference.get("latency_ms")
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


def _figure(frame: pd.DataFrame, title: str, reference: dict[str, Any] | None = None
            ) -> go.Figure:
    choices = choice_columns(frame)
    done = frame[frame["state"] == "COMPLETE"]
    rest = done[~done["pareto"]]
    front = pareto_frame(frame)
    layers = [
        (rest[rest["feasible"]], "feasible", {"marker": {"color": "#bbbbbb", "size": 7}}),
        (
            rest[~rest["feasible"]],
            "infeasible",
            {"marker": {"color": "#999999", "size": 7, "symbol": "x"}},
        ),
        (
            front,
            "Pareto front",
            {
                "mode": "lines+markers",
                "line": {"shape": "hv", "color": "#d62728"},
                "marker": {"color": "#d62728", "size": 10},
            },
        ),
    ]
    fig = go.Figure()
    for subset, name, style in layers:  # drawn in order, so the front sits on top
        fig.add_trace(_scatter(subset, choices, name, **{"mode": "markers", **style}))
    if reference:
        _add_reference(fig, reference)
    fig.update_layout(
        title=title,
        xaxis_title="latency (ms, lower is better)",
        yaxis_title="validation accuracy (higher is better)",
        template="plotly_white",
        hovermode="closest",
    )
    return fig


def _counts(frame: pd.DataFrame) -> str:
    state = frame["state"]
    return (
        f"{len(frame)} trials: {(state == 'COMPLETE').sum()} complete, "
        f"{int(frame['feasible'].sum())} feasible, {(state == 'FAIL').sum()} failed, "
        f"{int(frame['pareto'].sum())} Pareto-optimal"
    )


def _table(frame: pd.DataFrame, reference: dict[str, Any] | None = None) -> str:
    front = pareto_frame(frame)
    if front.empty:
        return '<p class="empty">No feasible completed trial yet, so no Pareto front.</p>'
    cols = [*_TABLE_HEAD, *choice_columns(frame)]
    if reference:
        front = compare_to_reference(front, reference)
        cols[len(_TABLE_HEAD) - 1 : len(_TABLE_HEAD) - 1] = ["acc_vs_teacher",
                                                            "speedup_vs_teacher"]
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
        plot = _figure(frame, title, reference).to_html(
            full_html=False, include_plotlyjs=True, default_width="100%", default_height="560px"
        )
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
