"""The teacher as reference point: how much accuracy a student gives up, how much speed it gains.

The search stores the teacher's own validation accuracy and latency with the study (user attr
``teacher``); these helpers only read that record, so reports need no torch.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from edgeshrink.evaluators.teacher.reference import number_or_none as _number
from edgeshrink.evaluators.teacher.reference import reference_text

REFERENCE_ATTR = "teacher"


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
