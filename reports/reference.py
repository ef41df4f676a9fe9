"""The teacher as reference point: how much accuracy a student gives up, how much speed it gains.

The search stores the teacher's own validation accuracy and latency with the study (user attr
``teacher``); these helpers only read that record, so reports need no torch.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

REFERENCE_ATTR = "teacher"


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def reference_text(reference: dict[str, Any]) -> str:
    """One line: the teacher's source, accuracy and latency (or why latency is missing)."""
    acc = _number(reference.get("accuracy"))
    lat = _number(reference.get("latency_ms"))
    parts = [f"teacher {reference.get('source', '?')}",
             f"accuracy {acc:.4f}" if acc is not None else "accuracy n/a",
             f"latency {lat:.4f} ms" if lat is not None
             else f"latency n/a ({reference.get('latency_error', 'not measured')})"]
    params = _number(reference.get("params"))
    if params is not None:
        parts.append(f"{int(params):,} parameters")
    return ", ".join(parts)


def compare_to_reference(front: pd.DataFrame, reference: dict[str, Any] | None) -> pd.DataFrame:
    """Add ``acc_vs_teacher`` (accuracy difference) and ``speedup_vs_teacher`` (x faster)."""
    out = front.copy()
    acc = _number((reference or {}).get("accuracy"))
    lat = _number((reference or {}).get("latency_ms"))
    out["acc_vs_teacher"] = out["accuracy"] - acc if acc is not None else float("nan")
    out["speedup_vs_teacher"] = lat / out["latency_ms"] if lat is not None else float("nan")
    return out


def tradeoff_text(front: pd.DataFrame, reference: dict[str, Any] | None) -> str:
    """What the most accurate and the fastest front points give up and gain against the teacher."""
    if not reference:
        return ""
    line = "Reference: " + reference_text(reference) + "."
    rows = compare_to_reference(front, reference)
    if rows.empty:
        return line
    best, fastest = rows["accuracy"].idxmax(), rows["latency_ms"].idxmin()
    picks = ({"most accurate": rows.loc[best], "fastest": rows.loc[fastest]} if best != fastest
             else {"only": rows.loc[best]})
    for name, row in picks.items():
        gain = row["speedup_vs_teacher"]
        speed = f", {gain:.1f}x the teacher's speed" if _number(gain) is not None else ""
        line += (f" The {name} front point (trial {int(row['trial'])}) gives "
                 f"{row['acc_vs_teacher']:+.4f} accuracy{speed}.")
    return line
