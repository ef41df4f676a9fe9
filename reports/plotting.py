"""What the HTML report and the dashboard draw alike: a marker per model family, the uncompressed
base model as a star, and an accuracy axis fitted to the front.

One failed-to-learn trial at accuracy 0.1 would otherwise stretch the y axis so far that the whole
front sits in a corner; so the axis starts just below the front and such outliers are drawn
pinned to its bottom edge, hollow, their real accuracy in the hover text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from edgeshrink.reports.frame import BASE, STUDENT

FAMILY_SYMBOLS = {STUDENT: "circle", BASE: "diamond"}
FAMILY_NAMES = {STUDENT: "student (searched network)", BASE: "base (your model, compressed)"}
REFERENCE_NAME = "base model"  # the uncompressed user model, drawn as a star
REFERENCE_STYLE = {"symbol": "star", "size": 18, "color": "#ff7f0e",
                   "line": {"color": "#222", "width": 1}}
PINNED_COLOUR = "#555555"
MIN_PAD = 0.005  # the axis starts at least this far below the front


def families(frame: pd.DataFrame) -> list[str]:
    """The families present, students first (a study from before families has only those)."""
    found = set(frame["family"].dropna()) if "family" in frame.columns else set()
    return sorted(found or {STUDENT}, key=lambda f: (f != STUDENT, f))


def accuracy_range(front: Iterable[float], shown: Iterable[float]) -> list[float] | None:
    """[bottom, top] of the y axis: from the front's lowest accuracy less 10% of the front's
    span (at least ``MIN_PAD``) up past everything shown; None without a front (auto range)."""
    acc = np.asarray([v for v in front if v is not None], dtype=float)
    acc = acc[np.isfinite(acc)]
    if not acc.size:
        return None
    pad = max(0.1 * float(acc.max() - acc.min()), MIN_PAD)
    rest = np.asarray([v for v in shown if v is not None], dtype=float)
    top = max([float(acc.max()), *rest[np.isfinite(rest)].tolist()])
    return [float(acc.min()) - pad, top + pad]


def pin(accuracy: pd.Series, yrange: Sequence[float] | None) -> tuple[list[float], np.ndarray]:
    """The y to draw (accuracy, or the axis bottom for points below it) and which were pinned."""
    acc = accuracy.astype(float).to_numpy()
    if yrange is None:
        return acc.tolist(), np.zeros(len(acc), dtype=bool)
    pinned = acc < yrange[0]
    return np.where(pinned, yrange[0], acc).tolist(), pinned


def pinned_note(accuracy: float) -> str:
    return f"accuracy {accuracy:.4g} is below the axis: drawn at its bottom edge"


def symbols(family: Iterable[str], pinned: Iterable[bool], crossed: bool = False) -> list[str]:
    """Per-point marker: circle for students, diamond for base; crossed when infeasible, hollow
    when pinned."""
    out = []
    for fam, low in zip(family, pinned, strict=True):
        shape = FAMILY_SYMBOLS.get(fam, "circle")
        if crossed:
            shape = "x" if shape == "circle" else f"{shape}-x"
        out.append(f"{shape}-open" if low else shape)
    return out


def emphasise(marker: dict, pinned: Iterable[bool]) -> dict:
    """``marker`` with pinned points drawn opaque, 2 px wide and (unless the colour is a scale)
    dark, so hollow markers on a dimmed layer still show on the axis edge."""
    low = list(pinned)
    if not any(low):
        return marker
    out = dict(marker)
    line = marker.get("line") or {}
    out["line"] = {**line, "width": [2.0 if p else line.get("width", 0) for p in low]}
    if "opacity" in marker:
        out["opacity"] = [1.0 if p else marker["opacity"] for p in low]
    if isinstance(marker.get("color"), str):
        out["color"] = [PINNED_COLOUR if p else marker["color"] for p in low]
    return out


def family_key(frame: pd.DataFrame) -> list[go.Scatter]:
    """Legend-only entries, one per family with its marker, when a study has base trials."""
    found = families(frame)
    if found == [STUDENT]:
        return []
    counts = frame["family"].value_counts()
    return [go.Scatter(x=[None], y=[None], mode="markers", hoverinfo="skip",
                       name=f"{FAMILY_NAMES.get(f, f)} ({int(counts.get(f, 0))})",
                       marker={"symbol": FAMILY_SYMBOLS.get(f, "circle"), "size": 10,
                               "color": "#555"})
            for f in found]


def family_counts(frame: pd.DataFrame) -> str:
    """"2 base, 5 student" when a study holds both families, else ""."""
    found = families(frame)
    if len(found) < 2:
        return ""
    counts = frame["family"].value_counts()
    return ", ".join(f"{int(counts.get(f, 0))} {f}" for f in found[::-1])


def log_buttons(label: str) -> list[dict]:
    """Linear / log x-axis buttons (``updatemenus``) for a page without a server: latencies span
    decades once tiny students sit beside the user's big model."""
    return [{"type": "buttons", "direction": "right", "x": 1.0, "xanchor": "right", "y": 1.02,
             "yanchor": "bottom", "showactive": True, "active": 0,
             "buttons": [{"label": f"{scale} {label}", "method": "relayout",
                          "args": [{"xaxis.type": scale}]} for scale in ("linear", "log")]}]
