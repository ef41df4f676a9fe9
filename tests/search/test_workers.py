"""Several workers on one study, and searches that survive SIGKILL (journal file storage)."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from procs import CLI, TINY, running_trial_of_other, trials_of, wait_for

from edgeshrink.search import stale
from edgeshrink.search.study import open_storage
from edgeshrink.search.workers import worker_seed


def test_worker_seeds_are_distinct_and_one_process_keeps_its_rule():
    assert worker_seed(7, 0, 12) == 19  # the single-process rule: seed + trials already run
    seeds = {worker_seed(7, i, n) for i in range(1, 9) for n in (0, 4, 8)}
    assert len(seeds) == 24  # every (worker, resume point) pair draws its own stream
    assert worker_seed(7, 3, 4) == worker_seed(7, 3, 4)  # and reproducibly
    assert worker_seed(7, 1, 0) != worker_seed(8, 1, 0)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running_trial(study, owner):
    trial = study.ask({"x": FloatDistribution(0, 1)})
    trial.set_user_attr("worker", owner(trial.number))
    return trial


def test_dead_owner_is_failed_and_retried_exactly_once(tmp_path):
    storage = open_storage(tmp_path, None, create=True)
    study = optuna.create_study(study_name="s", storage=storage)
    dead = _dead_pid()
    host = socket.gethostname()
    killed = _running_trial(study, lambda n: {"trial": n, "host": host, "pid": dead,
                                              "start": "1"})
    alive = _running_trial(study, stale.owner_record)
    remote = _running_trial(study, lambda n: {"trial": n, "host": "elsewhere", "pid": 1})

    # Two workers look at the same moment, each through its own storage object.
    other = optuna.load_study(study_name="s", storage=open_storage(tmp_path, None, create=False))
    assert sorted(stale.fail_stale_trials(study) + stale.fail_stale_trials(other)) == [0]

    by_number = {t.number: t for t in study.trials}
    assert by_number[killed.number].state == TrialState.FAIL
    assert "interrupted" in by_number[killed.number].user_attrs["error"]
    assert by_number[alive.number].state == TrialState.RUNNING  # its owner is this process
    assert by_number[remote.number].state == TrialState.RUNNING  # cannot tell: leave it
    retries = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(retries) == 1
    assert retries[0].params == by_number[killed.number].params
    assert retries[0].system_attrs["failed_trial"] == killed.number

    # The retry runs and its worker dies too: it is failed, but not queued a second time.
    trial = study.ask()
    assert trial.number == retries[0].number and trial.params == retries[0].params
    trial.set_user_attr("worker", {"trial": trial.number, "host": host, "pid": dead,
                                   "start": "1"})
    assert stale.fail_stale_trials(study) == [trial.number]
    assert not [t for t in study.trials if t.state == TrialState.WAITING]


@pytest.mark.slow
def test_concurrent_first_starts_train_the_teacher_once(tmp_path):
    script = textwrap.dedent(f"""
        from pathlib import Path
        from edgeshrink.evaluators.data.splits import load_digits_splits
        from edgeshrink.evaluators.teacher.builtin import load_or_train_teacher
        from edgeshrink.search.workers import preparation_lock
        run = Path({str(tmp_path / "run")!r})
        data = load_digits_splits(16)
        with preparation_lock(run):
            t = load_or_train_teacher(data, run / "teacher", seed=0, epochs=1)
        print("TRAINED" if t.trained_now else "LOADED", t.val_accuracy)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(2)]
    texts = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    outputs = [text.splitlines()[-1].split() for text in texts]
    assert sorted(o[0] for o in outputs) == ["LOADED", "TRAINED"]
    assert outputs[0][1] == outputs[1][1]  # the loader got the very model the trainer cached
    assert not list((tmp_path / "run" / "teacher").glob("*.tmp"))


def _states(trials):
    return [t.state for t in trials]


@pytest.mark.slow
def test_sigkill_mid_trial_then_same_command_finishes_the_study(seeded_run_dir):
    cmd = [*CLI, "search", "--study", "k", "--run-dir", str(seeded_run_dir), "--trials", "3",
           *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        victim = wait_for(
            lambda: next((t for t in trials_of("k", seeded_run_dir)
                          if t.state == TrialState.RUNNING and t.number >= 1
                          and "arch" in t.user_attrs), None),
            180, "the search to start its second trial", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {t.number: (t.values, t.params) for t in trials_of("k", seeded_run_dir)
              if t.state == TrialState.COMPLETE}
    assert before and victim.number not in before

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"trial(s) [{victim.number}] were interrupted" in again.stdout

    trials = trials_of("k", seeded_run_dir)
    assert [t.number for t in trials] == list(range(len(trials)))
    by_number = {t.number: t for t in trials}
    for number, record in before.items():  # completed trials are kept as they were
        assert (by_number[number].values, by_number[number].params) == record
    assert by_number[victim.number].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == victim.params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert TrialState.RUNNING not in _states(trials) and TrialState.WAITING not in _states(trials)
    with open(seeded_run_dir / "trials.csv") as fh:
        rows = {int(r["trial"]): r for r in csv.DictReader(fh)}
    assert set(rows) == set(by_number)
    assert "interrupted" in rows[victim.number]["error"]


@pytest.mark.slow
def test_jobs_share_one_study_and_survive_a_killed_worker(seeded_run_dir):
    cmd = [*CLI, "search", "--study", "j", "--run-dir", str(seeded_run_dir), "--trials", "6",
           "--jobs", "2", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = wait_for(lambda: running_trial_of_other("j", seeded_run_dir, proc.pid), 180,
                          "the second worker process to start a trial", proc)
        os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "worker 1 exited with code -9" in out

    trials = trials_of("j", seeded_run_dir)
    assert [t.number for t in trials] == list(range(len(trials)))  # no duplicates, no gaps
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 6 <= len(complete) <= 7  # at most one trial over: each worker checks, then starts
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL and "interrupted" in killed.user_attrs["error"]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].params == victim.params
    assert retry[0].state == TrialState.COMPLETE
    assert retry[0].user_attrs["worker"]["pid"] == proc.pid  # the survivor took it over
    assert TrialState.RUNNING not in _states(trials) and TrialState.WAITING not in _states(trials)
    # Each worker draws its own parameters: only the retry repeats another trial's.
    drawn = {json.dumps(t.params, sort_keys=True) for t in trials}
    assert len(drawn) == len(trials) - 1
    with open(seeded_run_dir / "trials.csv") as fh:
        assert sorted(int(r["trial"]) for r in csv.DictReader(fh)) == [t.number for t in trials]
    assert "loaded from cache" in (seeded_run_dir / "workers" / "worker-1.log").read_text()



def test_joining_workers_get_the_search_options_not_its_local_ones(tmp_path):
    from edgeshrink.search.runner import SearchOptions
    from edgeshrink.search.workers import shared_options

    opts = SearchOptions(study="x", run_dir=tmp_path, storage="sqlite:///x.db", trials=5,
                         jobs=3, epochs=2, space=tmp_path / "space.yaml")
    shared = shared_options(opts)
    assert shared["trials"] == 5 and shared["epochs"] == 2
    assert shared["space"] == str(tmp_path / "space.yaml")  # JSON-safe for the study attrs
    assert not {"study", "run_dir", "storage", "jobs", "worker", "progress"} & set(shared)
