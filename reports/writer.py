"""Write the report files so a reader (or a browser auto-refresh) never sees a half-written one
(each through ``core.atomic``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from edgeshrink.core.atomic import atomic_write_text
from edgeshrink.reports.frame import pareto_frame, trials_frame
from edgeshrink.reports.html import render_html
from edgeshrink.reports.reference import REFERENCE_ATTR
from edgeshrink.search.study import resolve_run_dir

if TYPE_CHECKING:
    from edgeshrink.search.runner import SearchOptions


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


def search_and_report(opts: SearchOptions) -> optuna.Study:
    """``edgeshrink search``: run the study, then write its report unless ``opts.report`` is
    off. Here rather than in the runner, so ``search`` never imports ``reports``."""
    from edgeshrink.search.runner import run_search  # torch: only when a search runs

    study = run_search(opts)
    if opts.report:
        paths = write_report(study, resolve_run_dir(opts.study, opts.run_dir))
        print(f"report: {paths['html']}\ntrials: {paths['trials']}\npareto: {paths['pareto']}")
    return study
