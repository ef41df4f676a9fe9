"""What can be chosen, and how a choice is realised. Importing this package loads nothing heavy:
its names are imported on first use, so ``spaces.quantization`` runs where yaml and torch are
missing (a device calibrating its profile)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Candidate": "edgeshrink.spaces.candidate",
    "StageSpec": "edgeshrink.spaces.candidate",
    "format_arch": "edgeshrink.spaces.candidate",
    "parse_arch": "edgeshrink.spaces.candidate",
    "SearchSpace": "edgeshrink.spaces.space",
    "load_space": "edgeshrink.spaces.space",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgeshrink.spaces' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
