"""Names that come from stored or remote data cannot make an export write outside its directory."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.reports.export import pick_by_number
from edgeshrink.reports.paths import inside
from edgeshrink.search.study import open_storage


def test_inside_accepts_children_and_refuses_every_way_out(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert inside(root, "trial_3") == root / "trial_3"
    assert inside(root, "rung0_trial3", "model.onnx") == root / "rung0_trial3" / "model.onnx"
    (root / "link").symlink_to(tmp_path)
    for bad in ("../evil", "a/../../evil", "/etc/passwd", ".", "link/evil"):
        with pytest.raises(EdgeshrinkError, match="not inside"):
            inside(root, bad)


@pytest.fixture
def study(tmp_path):
    s = optuna.create_study(study_name="s", directions=["maximize", "minimize"],
                            storage=open_storage(tmp_path / "run", None, create=True))
    s.add_trial(create_trial(values=[0.9, 1.0], params={"x": 0.5},
                             distributions={"x": FloatDistribution(0, 1)}))
    return s


@pytest.mark.parametrize("number", ["../../evil", "0/../../evil", 0.0, True])
def test_trial_numbers_must_be_whole_numbers(study, number):
    with pytest.raises(EdgeshrinkError, match="whole number"):
        pick_by_number(study, number)


def test_dashboard_export_of_a_crafted_trial_number_writes_nothing(study, tmp_path):
    from edgeshrink.reports.dashboard import StudySource, export_message

    exports = tmp_path / "run" / "exports"
    before = sorted(p for p in tmp_path.rglob("*"))
    # The trial number arrives from the browser; a crafted request can send anything.
    div = export_message(StudySource("s", tmp_path / "run", None), "../../../evil", exports)
    assert div.id == "export-error" and "not inside" in str(div.children)
    assert sorted(p for p in tmp_path.rglob("*")) == before
