"""A throwaway PostgreSQL server on loopback, installed from Debian's packages when missing.

CI starts on a clean machine with only ``.ci/run``, so the fixture does everything itself:
``apt-get install postgresql`` (as root, or through password-less sudo), ``initdb`` into a
temporary directory with a password, start on a free loopback port, and stop and delete it at the
end of the session. Tests that use it are skipped, with the reason, only when the server cannot
be installed or started here.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "edgeshrink"
PASSWORD = "pg-secret-7f3a"  # tests check that this never appears in any output


def _bin_dir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").is_file():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _install() -> str | None:
    """Install Debian's server package; return why not, or None on success."""
    if not shutil.which("apt-get"):
        return "no apt-get here (not a Debian-like system) to install postgresql"
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        return "not root and no sudo, so apt-get cannot install postgresql"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0:  # a clean machine may have no package lists yet
        subprocess.run([*prefix, "apt-get", "update", "-q"], capture_output=True, env=env)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`apt-get install postgresql` failed: {tail}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://edgeshrink:<password>@127.0.0.1:<port>/postgres`` of a fresh server."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        why = _install()
        bin_dir = _bin_dir()
        if bin_dir is None:
            pytest.skip(f"PostgreSQL server not available: {why or 'initdb not found'}")
    # initdb refuses to run as root; the Debian package creates the `postgres` account.
    run_as: dict = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL server not available: running as root and no `postgres` user")
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    base = Path(tempfile.mkdtemp(prefix="edgeshrink-pg-"))
    data = base / "data"
    if run_as:
        os.chown(base, run_as["user"], run_as["group"])
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    port = _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True,
                              cwd=base, timeout=120, **run_as)

    init = pg("initdb", "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
              "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL server not available: initdb failed: {init.stderr.strip()}")
    start = pg("pg_ctl", "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
               "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    if start.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL server not available: pg_ctl start failed: "
                    f"{(start.stderr or log).strip()[-300:]}")
    try:
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
