"""Pick a point of a finished study and ship it: the measured artifact, its recipe, its proof.

An export never re-creates the model: it copies the exact quantized file the search measured,
re-checks that it still scores the stored validation accuracy, scores it once on the held-out
test split (never seen by the search), and writes everything to a staging directory that is
renamed into place only when complete, so an interrupted export leaves nothing half-written.

Picking works for any number of objectives (``--objectives``); values[0] is always accuracy and
values[1] latency. The front is the feasible front over all of them. ``--max-latency`` takes the
most accurate trial within the budget, ties going to the lower latency, then to the lower value of
each further objective (so the pick is on the front). ``--knee`` generalizes the chord rule, see
:func:`knee_point`. ``--ladder`` keeps only front points that no other front point beats on both
accuracy and latency, because its runtime selector chooses by latency alone.

Modules: ``pick`` (which trial), ``bundle`` (the files and their proof), ``model_card``.
"""

from edgeshrink.reports.export.bundle import (
    SELECTOR_FILE,
    ExportResult,
    export_ladder,
    export_trial,
    staged_directory,
)
from edgeshrink.reports.export.model_card import model_card
from edgeshrink.reports.export.pick import (
    Pick,
    knee_index,
    knee_point,
    ladder_trials,
    pareto_trials,
    pick_by_number,
    pick_knee,
    pick_under_latency,
)

__all__ = [
    "SELECTOR_FILE", "ExportResult", "Pick", "export_ladder", "export_trial", "knee_index",
    "knee_point", "ladder_trials", "model_card", "pareto_trials", "pick_by_number", "pick_knee",
    "pick_under_latency", "staged_directory",
]
