"""Live Pareto dashboard: a Dash app over the study storage, refreshed while a search runs.

The study is opened once, so a missing study fails before anything is served; every refresh then
re-reads the same storage object, which syncs with the file or database (a JournalStorage reads
only the log lines appended since its last read). Layout pieces and callback bodies are plain
functions so tests can check them without a browser; :func:`make_app` only wires them up.

A study with more than two objectives (``--objectives accuracy,latency,energy``) is still drawn as
accuracy against the chosen x axis, its points coloured by the first extra objective not on that
axis; its front (the study's ``best_trials``) is not a staircase in such a view, so no step line
joins it, and the energy column and x axis appear wherever the study records energy.

A study that compresses the user's own model beside searched students marks each point's family
(circle: student, diamond: base, star: the uncompressed base model), offers a family filter and
lists, for base trials, the channels kept per stage group.

Modules: ``data`` (the study as a table, filters, counts), ``figures`` (plotly), ``panels``
(details, comparison, problems, table rows), ``app`` (layout, callbacks, export, server) and
``assets/dashboard.css``.
"""

from edgeshrink.reports.dashboard.app import export_message, make_app, serve
from edgeshrink.reports.dashboard.data import (
    EMPTY_TEXT,
    StudySource,
    counts_text,
    dashboard_frame,
    family_filter_style,
    from_store,
    in_families,
    qualifies,
    to_store,
    trial_status,
)
from edgeshrink.reports.dashboard.figures import front_figure
from edgeshrink.reports.dashboard.panels import (
    channel_groups_table,
    comparison_children,
    details_children,
    latency_slider,
    problems_children,
    table_rows,
)

__all__ = [
    "EMPTY_TEXT", "StudySource", "channel_groups_table", "comparison_children", "counts_text",
    "dashboard_frame", "details_children", "export_message", "family_filter_style", "from_store",
    "front_figure", "in_families", "latency_slider", "make_app", "problems_children",
    "qualifies", "serve", "table_rows", "to_store", "trial_status",
]
