"""Turn a finished (or running) study into files a person can read: HTML, CSV. No torch here."""

from edgeshrink.reports.frame import pareto_frame, trials_frame
from edgeshrink.reports.writer import write_report

__all__ = ["pareto_frame", "trials_frame", "write_report"]
