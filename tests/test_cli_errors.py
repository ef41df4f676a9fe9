"""Bad input: one line naming the problem, exit code 2, no traceback, nothing written."""

import subprocess
import sys

import pytest


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "edgeshrink.search.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )


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
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    result = _run(*args, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run" / "trials").exists()


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
