"""Bad input: one line naming the problem, exit code 2, no traceback, nothing written."""

import re
import subprocess
import sys

import pytest


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "edgeshrink.search.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["search", "--trials", "0"], "--trials must be at least 1"),
        (["search", "--trials", "-3"], "--trials must be at least 1"),
        (["search", "--profile", "pi9"], "unknown profile 'pi9'"),
        (["search", "--sampler", "grid"], "unknown sampler 'grid'"),
        (["search", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["search", "--min-accuracy", "95"], "--min-accuracy is a fraction"),
        (["search", "--space", "missing.yaml"], "space file 'missing.yaml' does not exist"),
        (["report", "--study", "ghost"], "no study storage"),
        (["search", "--objectives", "accuracy,speed"], "unknown objective 'speed'; choose from"),
        (["search", "--objectives", "accuracy,latency,accuracy"], "'accuracy' is given twice"),
        (["search", "--objectives", "latency,size"], "must include accuracy and latency"),
        (["search", "--objectives", "accuracy,latency,energy"],
         "profile 'host' has none (profiles with energy figures: coral-edge-tpu)"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    result = _run(*args, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run" / "trials").exists()


@pytest.mark.slow
def test_invalid_space_values_are_named(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "stages: [{channels: 8, stride: 1}]\n"
        "choices: {block: [ir_k3_e3], sparsity: {low: 0.0, high: 1.5}, precision: [fp32],\n"
        "  width_mult: {low: 1, high: 1}, temperature: {low: 1, high: 2},\n"
        "  alpha: {low: 0, high: 0.5}}\n"
    )
    result = _run("search", "--space", str(space), "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2 and "choices.sparsity" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_report_on_unknown_study_in_existing_storage(tmp_path):
    import optuna

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from edgeshrink.search.study import open_storage

    storage = open_storage(run_dir, None, create=True)
    optuna.create_study(study_name="real", storage=storage, directions=["maximize", "minimize"])
    result = _run("report", "--study", "ghost", "--run-dir", str(run_dir), cwd=tmp_path)
    assert result.returncode == 2
    assert "no study named 'ghost'" in result.stderr and "real" in result.stderr


def test_storage_url_password_is_masked():
    from edgeshrink.search.study import mask_url

    assert mask_url("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"


# ---- the same promises against a run directory that already holds results: the error names
# the problem (and the fix) on one line, and not one byte of what is there changes.

SECRET = "s3cret-pw"


@pytest.fixture
def existing(tmp_path):
    """A run directory with a study 'done' (trials 0, 1 COMPLETE, 2 FAIL) and its report."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from edgeshrink.reports.writer import write_report
    from edgeshrink.search.study import open_storage

    run_dir = tmp_path / "run"
    study = optuna.create_study(study_name="done", directions=["maximize", "minimize"],
                                storage=open_storage(run_dir, None, create=True))
    dist = {"x": FloatDistribution(0, 1)}
    for x, values in ((0.1, [0.9, 1.0]), (0.2, [0.8, 0.5])):
        study.add_trial(create_trial(values=values, params={"x": x}, distributions=dist))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.3}, distributions=dist,
                                 user_attrs={"error": "RuntimeError: boom"}))
    write_report(study, run_dir)
    return run_dir


def _snapshot(root):
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(result, message):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    return lines[0]


def _free_port(_tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bad_profile(tmp_path):
    from importlib import resources

    host = resources.files("edgeshrink.hardware_profiles").joinpath("profiles/host.toml")
    path = tmp_path / "broken.toml"
    path.write_text(re.sub(r"(?m)^intra_op_threads = .*$", 'intra_op_threads = "many"',
                           host.read_text()))
    return path


def _bad_precision_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "stages: [{channels: 8, stride: 1}]\n"
        "choices: {block: [ir_k3_e3], sparsity: {low: 0.0, high: 0.5}, precision: [int3],\n"
        "  width_mult: {low: 1, high: 1}, temperature: {low: 1, high: 2},\n"
        "  alpha: {low: 0, high: 0.5}}\n"
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["search", "--study", "done", "--jobs", "0"], "--jobs must be at least 1"),
        (["search", "--study", "done", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["search", "--study", "done", "--profile", _bad_profile],
         "field 'measurement.intra_op_threads' must be int, got 'many'"),
        (["search", "--study", "done", "--space", _bad_precision_space], "'choices.precision'"),
        (["search", "--study", "done", "--storage", f"postgresql://u:{SECRET}@127.0.0.1:1/db"],
         "cannot open storage postgresql://u:***@127.0.0.1:1/db"),
        (["report", "--study", "ghost"], "no study named 'ghost'"),
        (["export", "--study", "ghost", "--trial", "0", "--out", "OUT"],
         "no study named 'ghost'"),
        (["dashboard", "--study", "ghost", "--port", _free_port], "no study named 'ghost'"),
        (["export", "--study", "done", "--trial", "7", "--out", "OUT"],
         "has no trial 7 (trials are 0..2)"),
        (["export", "--study", "done", "--trial", "2", "--out", "OUT"],
         "trial 2 is FAIL, not COMPLETE"),
        (["worker", "--study", "done"], "was not started by `edgeshrink search`"),
        (["worker", "--study", "done", "--worker-index", "0"], "--worker-index must be at least 1"),
        (["search", "--study", "done", "--objectives", "accuracy,latency,size"],
         "was created with --objectives accuracy,latency, not accuracy,latency,size"),
    ],
    ids=["jobs-0", "dataset", "profile-field", "bit-width", "storage",
         "report-study", "export-study", "dashboard-study", "export-trial", "export-failed",
         "worker-unstarted", "worker-index", "objectives-resume"],
)
def test_bad_input_leaves_existing_results_untouched(existing, tmp_path, args, message):
    args = [str(a(tmp_path)) if callable(a) else str(tmp_path / a) if a == "OUT" else a
            for a in args]
    before = _snapshot(existing)
    result = _run(*args, "--run-dir", str(existing), cwd=tmp_path)
    _one_line_error(result, message)
    assert SECRET not in result.stderr + result.stdout
    assert _snapshot(existing) == before
    assert not (tmp_path / "OUT").exists()


@pytest.mark.slow
def test_debug_shows_the_traceback(existing, tmp_path):
    result = _run("--debug", "report", "--study", "ghost", "--run-dir", str(existing),
                  cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "EdgeshrinkError: no study named 'ghost'" in result.stderr


@pytest.mark.slow
def test_dashboard_port_already_in_use(existing, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run("dashboard", "--study", "done", "--run-dir", str(existing), "--port",
                      str(port), cwd=tmp_path)
    _one_line_error(result, f"cannot listen on 127.0.0.1:{port}")
    assert "pick another --port" in result.stderr


@pytest.fixture
def read_only(existing, tmp_path):
    """``ro/run``, a copy of ``existing`` that cannot be written, and ``rw/run``, one that can.

    Root ignores permission bits, so as root ``ro`` becomes a read-only bind mount.
    """
    import os
    import shutil

    ro, rw = tmp_path / "ro", tmp_path / "rw"
    shutil.copytree(existing, ro / "run")
    shutil.copytree(existing, rw / "run")
    mounted = False
    if os.geteuid() == 0:
        for cmd in (["mount", "--bind", str(ro), str(ro)],
                    ["mount", "-o", "remount,bind,ro", str(ro)]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                if mounted:
                    subprocess.run(["umount", str(ro)])
                pytest.skip(f"running as root, and no read-only mount possible here "
                            f"({done.stderr.strip()}), so no directory is read-only for root")
            mounted = True
    else:
        for path in [ro, *ro.rglob("*")]:
            if path.is_dir():
                path.chmod(0o555)
    yield tmp_path
    if mounted:
        subprocess.run(["umount", str(ro)], check=True)
    else:
        for path in [ro, *ro.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["search", "report", "export"])
def test_read_only_output_directory(read_only, command):
    ro, rw = read_only / "ro" / "run", read_only / "rw" / "run"
    before = _snapshot(ro)
    if command == "search":
        args = ["search", "--study", "done", "--run-dir", str(ro), "--trials", "3"]
        message = f"cannot write run directory {ro}"
    elif command == "report":
        args = ["report", "--study", "done", "--run-dir", str(ro)]
        message = "cannot write"
    else:  # the study is readable and writable; only --out's parent is not
        args = ["export", "--study", "done", "--run-dir", str(rw), "--trial", "0",
                "--out", str(ro / "export")]
        message = f"cannot write into {ro}"
    result = _run(*args, cwd=read_only)
    line = _one_line_error(result, message)
    assert "Permission denied" in line or "Read-only file system" in line
    assert _snapshot(ro) == before and not (ro / "export").exists()
