"""Finding a trial's artifact (evaluators.rescore), shared by the export and the benchmarks."""

from __future__ import annotations

import pytest

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.rescore import MODEL_FILE, artifact_dir


def test_artifact_dir_prefers_the_stored_path_then_the_run_dir(tmp_path):
    stored = tmp_path / "elsewhere" / MODEL_FILE
    moved = tmp_path / "run" / "trials" / "00007"
    moved.mkdir(parents=True)
    (moved / MODEL_FILE).write_bytes(b"onnx")
    assert artifact_dir(7, str(stored), tmp_path / "run") == moved  # stored file is gone
    stored.parent.mkdir()
    stored.write_bytes(b"onnx")
    assert artifact_dir(7, str(stored), tmp_path / "run") == stored.parent
    with pytest.raises(EdgeshrinkError, match="trial 3 is missing .*elsewhere.*00003.*--run-dir"):
        artifact_dir(3, str(tmp_path / "elsewhere" / "gone" / MODEL_FILE), tmp_path / "run")
    with pytest.raises(EdgeshrinkError, match="nowhere: no artifact recorded"):
        artifact_dir(3, None, None)
