"""Files and directories appear whole or not at all; cached work is done once."""

import threading
from pathlib import Path

import pytest

from edgeshrink.core import atomic


def test_failed_replace_keeps_old_file_and_cleans_up(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.txt"
    atomic.atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic.atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_atomic_path_publishes_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "weights.bin"
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(KeyError), atomic.atomic_directory(out) as stage:
        (stage / "new.txt").write_text("new")
        raise KeyError("half-way")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with atomic.atomic_directory(out) as stage:
        (stage / "new.txt").write_text("new")
        assert (out / "old.txt").exists()
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_compute_once_computes_once_across_concurrent_callers(tmp_path):
    result, calls = tmp_path / "result.txt", []

    def load():
        return result.read_text() if result.is_file() else None

    def compute():
        calls.append(1)
        atomic.atomic_write_text(result, "42")
        return "42"

    threads = [threading.Thread(target=lambda: atomic.compute_once(tmp_path / ".lock", load,
                                                                   compute))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert atomic.compute_once(tmp_path / ".lock", load, compute) == "42" and len(calls) == 1
