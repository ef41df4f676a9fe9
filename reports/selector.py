"""Pick the model of an exported ladder that fits a latency budget, at run time on the device.

This file is copied verbatim next to the models by ``edgeshrink export --ladder K``; it uses only
the standard library so the device needs nothing but this file, ``ladder.json`` and onnxruntime.

    from select_model import select
    path = select(latency_budget_ms=0.08)   # most accurate model that fits, or None
"""

from __future__ import annotations

import json
from pathlib import Path

LADDER_FILE = "ladder.json"


def load_ladder(directory: str | Path | None = None) -> list[dict]:
    """The ladder's rungs, each with ``trial``, ``accuracy``, ``latency_ms`` and ``model``."""
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent
    with open(directory / LADDER_FILE, encoding="utf-8") as fh:
        rungs = json.load(fh)["rungs"]
    for rung in rungs:
        rung["model"] = str(directory / rung["model"])
    return rungs


def select(latency_budget_ms: float, directory: str | Path | None = None) -> str | None:
    """Path of the most accurate model whose measured latency fits the budget (None if none)."""
    fitting = [r for r in load_ladder(directory) if r["latency_ms"] <= latency_budget_ms]
    if not fitting:
        return None
    best = max(fitting, key=lambda r: (r["accuracy"], -r["latency_ms"]))
    return best["model"]


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python select_model.py LATENCY_BUDGET_MS")
    chosen = select(float(sys.argv[1]))
    if chosen is None:
        sys.exit(f"no model in this ladder fits {sys.argv[1]} ms")
    print(chosen)
