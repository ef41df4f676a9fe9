"""Workers on PostgreSQL: a real server on loopback (see postgres.py), real worker processes."""

import csv
import os
import subprocess
import time

import optuna
import pytest
from filelock import FileLock
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from postgres import PASSWORD, postgres_url  # noqa: F401 - the fixture
from procs import CLI, TINY, wait_for

from edgeshrink.search import stale
from edgeshrink.search.study import load_existing_study, open_storage
from edgeshrink.search.workers import LOCK_FILE, OPTIONS_ATTR, STORAGE_ENV

pytestmark = pytest.mark.postgres


def _published(url: str, name: str) -> bool:
    try:
        return OPTIONS_ATTR in optuna.load_study(study_name=name, storage=url).user_attrs
    except KeyError:
        return False


def _wait_for_line(proc: subprocess.Popen, text: str, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return
    raise AssertionError(f"the process ended without printing {text!r}: {''.join(lines)}")


def test_a_search_and_a_joining_worker_finish_one_study(postgres_url, seeded_run_dir):  # noqa: F811
    url, name = postgres_url, "pg-two"
    # Hold the preparation lock so both processes are ready before either runs a trial.
    gate = FileLock(str(seeded_run_dir / LOCK_FILE))
    gate.acquire()
    search = subprocess.Popen(
        [*CLI, "search", "--study", name, "--storage", url, "--run-dir", str(seeded_run_dir),
         "--trials", "4", *TINY], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = None
    try:
        wait_for(lambda: _published(url, name), 120, "the search to publish its options", search)
        worker = subprocess.Popen(
            [*CLI, "worker", "--study", name, "--run-dir", str(seeded_run_dir),
             "--worker-index", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, STORAGE_ENV: url})  # the URL stays out of the process list
        worker_lines: list[str] = []
        _wait_for_line(worker, "waiting for another worker", worker_lines)
        gate.release()
        worker_out = "".join(worker_lines) + worker.communicate(timeout=300)[0]
        search_out = search.communicate(timeout=300)[0]
    finally:
        if gate.is_locked:
            gate.release()
        for proc in (search, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert search.returncode == 0, search_out
    assert worker.returncode == 0, worker_out
    assert "postgresql://edgeshrink:***@127.0.0.1" in search_out
    assert PASSWORD not in search_out + worker_out

    trials = load_existing_study(name, seeded_run_dir, url).trials
    assert [t.number for t in trials] == list(range(len(trials)))  # none duplicated, no gaps
    assert {t.state for t in trials} == {TrialState.COMPLETE}  # none lost or left running
    assert 4 <= len(trials) <= 5  # at most one over: each worker checks, then starts
    owners = {t.user_attrs["worker"]["pid"] for t in trials}
    assert owners == {search.pid, worker.pid}  # both processes ran trials

    report = subprocess.run([*CLI, "report", "--study", name, "--storage", url, "--run-dir",
                             str(seeded_run_dir)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    with open(seeded_run_dir / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(int(r["trial"]) for r in rows) == [t.number for t in trials]
    assert all(r["state"] == "COMPLETE" for r in rows)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_heartbeat_fails_a_silent_remote_worker_and_retries_once(postgres_url, tmp_path,  # noqa: F811
                                                                 monkeypatch):
    monkeypatch.setattr(stale, "HEARTBEAT_S", 1)
    monkeypatch.setattr(stale, "GRACE_S", 2)
    storage = open_storage(tmp_path, postgres_url, create=True)
    study = optuna.create_study(study_name="pg-heartbeat", storage=storage)
    trial = study.ask({"x": FloatDistribution(0, 1)})
    # A worker on another machine (its pid cannot be checked from here) beat once, then died.
    trial.set_user_attr("worker", {"trial": trial.number, "host": "elsewhere", "pid": 1})
    study._storage.record_heartbeat(trial._trial_id)
    assert stale.fail_stale_trials(study) == [] and study.trials[0].state == TrialState.RUNNING
    time.sleep(3.5)
    stale.fail_stale_trials(study)
    first, retry = study.trials
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING and retry.params == first.params
    assert retry.system_attrs["failed_trial"] == first.number
