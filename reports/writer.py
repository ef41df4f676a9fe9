"""Write the report files so a reader (or a browser auto-refresh) never sees a half-written one.

Each file goes to a temporary name in the same directory and is then moved into place with
``os.replace``, which is atomic on one filesystem.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import optuna

from edgeshrink.reports.frame import pareto_frame, trials_frame
from edgeshrink.reports.html import render_html
from edgeshrink.reports.reference import REFERENCE_ATTR


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` with ``data`` in one step; the temp file is removed if anything fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Text flavour of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode(encoding))


def write_report(study: optuna.Study, out_dir: Path | str) -> dict[str, Path]:
    """Write ``report.html``, ``trials.csv`` and ``pareto.csv``; return them keyed by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study)
    # Render everything before writing anything, so a rendering error leaves old files alone.
    contents = {
        "html": ("report.html", render_html(frame, title=f"edgeshrink: {study.study_name}",
                                            reference=study.user_attrs.get(REFERENCE_ATTR))),
        "trials": ("trials.csv", frame.to_csv(index=False)),
        "pareto": ("pareto.csv", pareto_frame(frame).to_csv(index=False)),
    }
    return {
        kind: atomic_write_text(out_dir / name, text) for kind, (name, text) in contents.items()
    }
