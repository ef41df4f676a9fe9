"""Whether a trial's owner process still runs: pid, zombie state and start time (psutil)."""

import socket
import subprocess
import sys
import time

import psutil

from edgeshrink.search import stale


def test_this_process_is_alive_and_a_reused_pid_is_not():
    record = stale.owner_record(4)
    assert record["trial"] == 4 and isinstance(record["started"], float)
    assert stale.owner_alive(record) is True
    assert stale.owner_alive({**record, "started": record["started"] - 1.0}) is False  # pid reused
    unchecked = {k: v for k, v in record.items() if k != "started"}
    assert stale.owner_alive({**unchecked, "start": "1"}) is True  # an older version's record


def test_exited_and_zombie_owners_are_gone_and_remote_ones_unknown():
    host = socket.gethostname()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert stale.owner_alive({"host": host, "pid": child.pid, "start": None}) is False
    child.wait()
    assert stale.owner_alive({"host": host, "pid": child.pid, "start": None}) is False
    assert stale.owner_alive({"host": "elsewhere", "pid": 1}) is None
