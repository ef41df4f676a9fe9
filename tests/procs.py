"""Helpers for tests that run edgeshrink as real processes and watch the shared study."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.search.study import open_storage

CLI = [sys.executable, "-m", "edgeshrink.search.cli"]
TINY = ["--epochs", "1", "--finetune-epochs", "0", "--sampler", "random", "--no-progress"]

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float, what: str,
             proc: subprocess.Popen | None = None, poll: float = 0.1) -> T:
    """Poll until ``probe`` returns something truthy; fail the test naming ``what`` otherwise.

    Fails at once if ``proc`` exits first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited with code {proc.returncode} before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def trials_of(name: str, run_dir: Path, storage: str | None = None) -> list[FrozenTrial]:
    """The study's trials as a fresh reader sees them; [] while the study does not exist."""
    try:
        study = optuna.load_study(study_name=name,
                                  storage=open_storage(run_dir, storage, create=False))
    except Exception:  # noqa: BLE001 - not created yet
        return []
    return study.trials


def running_trial_of_other(name: str, run_dir: Path, not_pid: int | None = None,
                           storage: str | None = None) -> FrozenTrial | None:
    """A RUNNING trial with all its parameters whose owner is not ``not_pid``, or None."""
    for t in trials_of(name, run_dir, storage):
        owner = t.user_attrs.get("worker")
        if (t.state == TrialState.RUNNING and owner and owner["pid"] != not_pid
                and "arch" in t.user_attrs):  # set once every parameter is sampled
            return t
    return None
