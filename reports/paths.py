"""Paths built from stored data (trial numbers, names) must stay inside the directory they name.

A study or a dashboard request is data someone else may have written; an export joins parts of it
to ``--out``. :func:`inside` refuses any join that would land outside, whether by ``..``, an
absolute part or a symbolic link.
"""

from __future__ import annotations

from pathlib import Path

from edgeshrink.core.errors import EdgeshrinkError


def inside(root: Path | str, *parts: str) -> Path:
    """``root / parts`` if it resolves to a path under ``root``; else an error naming both."""
    root = Path(root)
    path = root.joinpath(*parts)
    base = root.resolve()
    target = path.resolve()
    if target == base or base not in target.parents:
        raise EdgeshrinkError(
            f"refusing to write {str(path)!r}: it is not inside {str(root)!r}; the name "
            "comes from stored data, which may have been tampered with"
        )
    return path
