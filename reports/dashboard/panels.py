"""The dashboard's side panels: one trial's details, a comparison, problems, table rows."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from dash import dcc, html
from optuna.trial import FrozenTrial

from edgeshrink.hardware_profiles.cpu import CpuInfo
from edgeshrink.reports.dashboard.data import LABELS, METRICS, present_metrics, trial_status
from edgeshrink.reports.dashboard.figures import (
    confusion_figure,
    layer_latency_figure,
    number_text,
)
from edgeshrink.reports.frame import (
    BASE,
    BASE_COLUMNS,
    ENERGY_COLUMN,
    choice_columns,
    trial_family,
)


def _kv_table(pairs: list[tuple[str, Any]], cls: str = "kv") -> html.Table:
    return html.Table([html.Tr([html.Th(k), html.Td(number_text(v), className="num")])
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
    family = trial_family(trial)
    if attrs.get("reference") == BASE:
        family += " (the uncompressed base model)"
    out: list[Any] = [
        html.H3(f"Trial {trial.number}", id="details-title"),
        html.Div([html.Span(f"{trial.state.name} · {family} · "),
                  html.Code(attrs.get("arch", "n/a"), className="arch", id="details-arch")]),
        html.H4("Metrics"), _kv_table(metrics),
        html.H4("Compression choices"), _kv_table(sorted(trial.params.items())),
    ]
    if trial_family(trial) == BASE:
        out += [html.H4("Channels kept per stage group"),
                channel_groups_table(attrs.get("channel_groups") or [])]
    out.append(html.H4("Confusion matrix (validation)"))
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


def channel_groups_table(groups: list[dict[str, Any]]) -> html.Table | html.P:
    """Output channels a base trial kept per stage group: where pruning cut the user's model."""
    if not groups:
        return html.P("not recorded", id="channel-groups-missing", className="empty")
    head = html.Tr([html.Th(h) for h in ("group", "units", "kept / total", "kept")])
    body = []
    for g in groups:
        kept, total = int(g.get("kept", 0)), int(g.get("total", 0))
        share = f"{100 * kept / total:.1f}%" if total else "n/a"
        body.append(html.Tr([html.Td(str(g.get("group", ""))),
                             html.Td(", ".join(g.get("units") or []), className="units"),
                             html.Td(f"{kept} / {total}", className="num"),
                             html.Td(share, className="num")]))
    return html.Table([html.Thead(head), html.Tbody(body)], className="kv",
                      id="channel-groups")


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
    fields = [*present_metrics(frame), "arch",
              *[c for c in ("family", *BASE_COLUMNS) if c in rows.columns],
              *[c for c in choice_columns(frame) if c in rows.columns]]
    body = []
    for field in fields:
        cells = [rows.at[n, field] for n in numbers]
        shown = [number_text(v) for v in cells]
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
    cols = ["trial", "status", *METRICS, "arch", "family", *BASE_COLUMNS, *choice_columns(frame),
            "duration_s"]
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
