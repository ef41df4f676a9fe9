"""Trials whose worker died mid-trial: mark them FAIL and run their parameters once more.

An RDB storage (PostgreSQL, SQLite) gets Optuna's heartbeat: a worker that stops beating for
``GRACE_S`` seconds, on any machine, has its trial failed by the next worker that looks. The
journal file has no heartbeat, so every trial also records its owner (host, pid, process start
time); a RUNNING trial whose owner process is gone from this host is failed at once, on either
storage. The parameters of a failed stale trial are enqueued once more (``MAX_RETRY``), so a kill
costs one trial's work, not a point of the search.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import psutil
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

OWNER_ATTR = "worker"
HEARTBEAT_S = 10  # one UPDATE per worker every 10 s; trials take seconds to minutes
GRACE_S = 30  # three missed beats before a remote worker counts as dead
MAX_RETRY = 1
# A RUNNING trial with no owner record (killed between creation and the record, microseconds
# apart) on a storage without heartbeat is declared dead after this long.
OWNERLESS_GRACE_S = 120.0
CONNECT_TIMEOUT_S = 10
# Start times of two processes on one pid differ by at least a clock tick (Linux: 10 ms); the
# same process read twice differs only by float rounding.
SAME_START_S = 5e-4


def rdb_storage(url: str) -> RDBStorage:
    """Optuna's RDB storage with the heartbeat on, so dead workers on any machine are detected."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
    )


def _started_after_boot(proc: psutil.Process) -> float:
    """When the process started, in seconds after boot: tells a reused pid apart.

    Not ``create_time()`` alone: that is epoch time, which moves when the clock is stepped
    (NTP, a resumed VM) and would make a live owner look like a stranger.
    """
    return round(proc.create_time() - psutil.boot_time(), 6)


def owner_record(trial_number: int) -> dict[str, Any]:
    """Who runs this trial; the trial number guards against a record copied onto a retry."""
    pid = os.getpid()
    return {"trial": trial_number, "host": socket.gethostname(), "pid": pid,
            "started": _started_after_boot(psutil.Process(pid))}


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """Whether the owning process still runs; None when it is on another host (cannot tell)."""
    if owner.get("host") != socket.gethostname():
        return None
    # "started", not the "start" (clock ticks, a string) older versions wrote: an older worker
    # then skips the check on this record rather than failing a live trial, and vice versa.
    start = owner.get("started")
    try:
        proc = psutil.Process(int(owner["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return (not isinstance(start, int | float)
                or abs(_started_after_boot(proc) - start) < SAME_START_S)
    except psutil.NoSuchProcess:  # gone, or a zombie on platforms that raise for one
        return False
    except psutil.AccessDenied:
        return True  # exists and belongs to another user: assume it is the owner


@dataclass
class OwnedObjective:
    """Wraps an objective so each trial first records its owner process."""

    objective: Callable[[optuna.Trial], Any]

    def __call__(self, trial: optuna.Trial) -> Any:
        trial.set_user_attr(OWNER_ATTR, owner_record(trial.number))
        return self.objective(trial)


def _age_s(trial: FrozenTrial) -> float:
    start = trial.datetime_start
    if start is None:
        return 0.0
    now = dt.datetime.now(start.tzinfo) if start.tzinfo else dt.datetime.now()
    return (now - start).total_seconds()


def _stale_reason(trial: FrozenTrial, heartbeat: bool) -> str | None:
    owner = trial.user_attrs.get(OWNER_ATTR)
    if isinstance(owner, dict) and owner.get("trial") == trial.number:
        if owner_alive(owner) is False:
            return f"interrupted: its worker (pid {owner['pid']} on {owner['host']}) is gone"
        return None
    if not heartbeat and _age_s(trial) > OWNERLESS_GRACE_S:
        return "interrupted: its worker left no record and did not finish"
    return None


def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Whether the storage beats (an RDB one with an interval), by its public getter."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def retry_once(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Enqueue the trial's parameters again unless it already is a retry; True if enqueued.

    Keeps the system attributes of Optuna's own retry callback (``failed_trial``,
    ``retry_history``), so ``RetryHeartbeatStaleTrialCallback.retried_trial_number`` works.
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRY:
        return False
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        system_attrs={"failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                      "retry_history": history},
    ))
    return True


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the trials of dead workers, enqueue each once more; return the failed numbers.

    Safe when several workers look at once: the storage lets exactly one of them move a trial
    from RUNNING to FAIL, and only that one enqueues the retry.
    """
    # Private, as in Optuna's own fail_stale_trials: there is no public call to fail
    # another process's trial.
    storage = study._storage
    heartbeat = heartbeat_enabled(storage)
    optuna.storages.fail_stale_trials(study)  # heartbeat storages; retries via their callback
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _stale_reason(trial, heartbeat)
        if reason is None:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "error", reason)
            won = storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker failed it first
        if won:
            failed.append(trial.number)
            retry_once(study, trial)
    return failed
