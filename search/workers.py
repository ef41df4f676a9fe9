"""Several worker processes on one study: on this machine (``--jobs N``) or any other (``worker``).

Every worker runs the same loop against the shared storage, so it does not matter which process
started the study: before each trial it fails the trials of dead workers (retried once, see
:mod:`edgeshrink.search.stale`) and stops once the study holds the requested number of done
trials. When the trials already running elsewhere would reach that number, it waits rather than
overshoot, and takes over if one of them dies. Workers prepare the shared teacher and gauge under
a file lock, so the first one trains and the others load the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from filelock import FileLock, Timeout
from optuna.trial import TrialState

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.search.options import SearchOptions, check_worker
from edgeshrink.search.stale import OwnedObjective, fail_stale_trials

DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
OPTIONS_ATTR = "search_options"  # the search's options, read by workers that join it
STORAGE_ENV = "EDGESHRINK_STORAGE"  # keeps a password out of the process list
LOCK_FILE = ".prepare.lock"
POLL_S = 2.0
# Options that identify where a process works or what it prints, not what the study searches.
# The device and loader processes are each machine's own (evaluators.settings.LOCAL_SETTINGS).
_LOCAL_OPTIONS = frozenset({"study", "run_dir", "storage", "report", "progress", "jobs", "worker",
                            "device", "loader_workers"})


def worker_seed(base: int, index: int, already: int) -> int:
    """Sampler seed of worker ``index`` starting on a study that already holds ``already`` trials.

    Worker 0 (the ``search`` process) keeps the one-process rule ``base + already``; the others
    mix all three numbers, so no two workers and no resume draw the same stream.
    """
    if index == 0:
        return (base + already) % 2**32  # a resumed study past seed 2**32 - 1 wraps around
    state = np.random.SeedSequence([base % 2**32, index, already]).generate_state(1)
    return int(state[0])


def shared_options(opts: SearchOptions) -> dict[str, Any]:
    """The options a joining worker must share with the search, as JSON-safe values."""
    out = {}
    for key, value in dataclasses.asdict(opts).items():
        if key not in _LOCAL_OPTIONS:
            out[key] = str(value) if isinstance(value, Path) else value
    return out


@contextlib.contextmanager
def preparation_lock(run_dir: Path) -> Iterator[None]:
    """Held while the teacher and gauge caches are checked or written: one writer at a time."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(run_dir / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print("waiting for another worker to prepare the teacher and gauge...", flush=True)
            lock.acquire()
    except OSError as exc:
        raise EdgeshrinkError(f"cannot write run directory {run_dir}: {exc.strerror}; "
                              "pass a writable --run-dir") from None
    try:
        yield
    finally:
        lock.release()


def _counts(study: optuna.Study) -> tuple[int, int]:
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in DONE_STATES for t in trials)
    return done, sum(t.state == TrialState.RUNNING for t in trials)


def work_until(study: optuna.Study, objective: Callable[[optuna.Trial], Any], target: int, *,
               max_trials: int, timeout: float | None = None,
               callbacks: Sequence[Callable[[optuna.Study, Any], None]] = (),
               poll_s: float = POLL_S) -> int:
    """Run trials one at a time until the study holds ``target`` done trials; return how many.

    Stops early after ``max_trials`` attempts (so a trial that always fails cannot loop forever)
    or ``timeout`` seconds.
    """
    owned = OwnedObjective(objective)
    deadline = None if timeout is None else time.monotonic() + timeout
    ran = 0
    while ran < max_trials and (deadline is None or time.monotonic() < deadline):
        failed = fail_stale_trials(study)
        if failed:
            print(f"trial(s) {failed} of a dead worker marked FAIL and queued again", flush=True)
        done, running = _counts(study)
        if done >= target:
            break
        if done + running >= target:
            time.sleep(poll_s)  # enough trials under way; take over only if one of them dies
            continue
        study.optimize(owned, n_trials=1, callbacks=list(callbacks), catch=(Exception,))
        ran += 1
    return ran


def threads_per_worker(jobs: int) -> int:
    """Torch threads per process, so N workers together do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // jobs)


@contextlib.contextmanager
def extra_workers(opts: SearchOptions, run_dir: Path,
                  remaining: int) -> Iterator[list[subprocess.Popen]]:
    """Start ``opts.jobs - 1`` ``edgeshrink worker`` processes beside this one; wait on exit.

    Never more processes than ``remaining`` trials. Each writes its output to
    ``<run_dir>/workers/worker-<i>.log``. A worker that dies does not stop the others; its exit
    code is reported.
    """
    procs: list[tuple[int, subprocess.Popen, Path]] = []
    jobs = min(opts.jobs, remaining)
    if jobs > 1:
        import torch

        threads = threads_per_worker(jobs)
        torch.set_num_threads(threads)
        # Unbuffered: a worker killed mid-trial still leaves its log lines behind.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        if opts.storage:
            env[STORAGE_ENV] = opts.storage
        log_dir = run_dir / "workers"
        log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(1, jobs):
            log = log_dir / f"worker-{index}.log"
            cmd = [sys.executable, "-m", "edgeshrink.search.cli", "worker", "--study", opts.study,
                   "--run-dir", str(run_dir), "--worker-index", str(index),
                   # auto or cuda: worker i trains on GPU i mod n (evaluators.device)
                   "--device", opts.device, "--loader-workers", str(opts.loader_workers)]
            with open(log, "ab") as fh:
                procs.append((index, subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                                      env=env), log))
        print(f"{jobs} workers on this study ({threads} thread(s) each); "
              f"logs of the others: {log_dir}", flush=True)
    finished = False
    try:
        yield [p for _, p, _ in procs]
        finished = True
    finally:
        for index, proc, log in procs:
            if not finished:
                proc.terminate()
            code = proc.wait()
            if finished and code != 0:
                print(f"worker {index} exited with code {code}; see {log}", flush=True)


def run_worker(study_name: str, run_dir: Path | None, storage_url: str | None,
               index: int | None = None, **overrides: Any) -> optuna.Study:
    """Join a study started by ``edgeshrink search`` and work on it until it is done.

    ``overrides`` (``space``, ``profile``) replace file paths that differ on this machine; the
    study still refuses a space or profile other than the one it started with.
    """
    from edgeshrink.search.study import load_existing_study, resolve_run_dir

    check_worker(study_name, run_dir, index, overrides.get("space"), overrides.get("profile"),
                 overrides.get("device"))
    run_dir = resolve_run_dir(study_name, run_dir)
    study = load_existing_study(study_name, run_dir, storage_url)
    stored = study.user_attrs.get(OPTIONS_ATTR)
    if not stored:
        raise EdgeshrinkError(f"study {study_name!r} was not started by `edgeshrink search`; "
                              "start it with `edgeshrink search`, then add workers")
    if index is None:
        index = 1 + secrets.randbelow(2**31 - 2)
        print(f"worker index {index} (pass --worker-index to fix this worker's seed)")
    from edgeshrink.search.runner import run_search  # torch: only when needed

    known = {f.name for f in dataclasses.fields(SearchOptions)}
    options = {k: v for k, v in stored.items() if k in known}
    options.update({k: v for k, v in overrides.items() if v is not None})
    return run_search(SearchOptions(**options, study=study_name, run_dir=run_dir,
                                    storage=storage_url, worker=index, report=False,
                                    progress=False))
