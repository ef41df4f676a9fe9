"""Searching against a predicted profile: the device limits the space, the latency model scores
the exported file, and a candidate that does not fit the device's memory is infeasible."""

import json
import shutil
from importlib import resources

import numpy as np
import onnx
import pytest
from optuna.trial import TrialState

from edgeshrink.hardware_profiles import load_profile
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.hardware_profiles.onnx_builder import GraphBuilder
from edgeshrink.search.cli import main
from edgeshrink.search.runner import SearchOptions, run_search

TINY = dict(epochs=1, finetune_epochs=0, progress=False, report=False, sampler="random")


def _search(tmp_path, teacher_dir, name: str, profile: str, trials: int = 3, seed: int = 5):
    run_dir = tmp_path / name
    shutil.copytree(teacher_dir, run_dir / "teacher")
    return run_search(SearchOptions(study=name, run_dir=run_dir, trials=trials, seed=seed,
                                    profile=profile, **TINY)), run_dir


@pytest.mark.slow
def test_pi_latency_is_the_latency_model_on_the_exported_file(tmp_path, teacher_dir):
    study, run_dir = _search(tmp_path, teacher_dir, "pi", "raspberry-pi-4")
    pi = load_profile("raspberry-pi-4")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3
    for t in done:
        pred = predict_latency(t.user_attrs["artifact"], pi)
        assert t.values[1] == t.user_attrs["latency_ms"] == pytest.approx(pred.total_ms, rel=1e-12)
        assert t.user_attrs["latency_method"] == "predicted"
        layers = t.user_attrs["layer_latency_ms"]
        assert len(layers) == len(pred.layers) and sum(layers.values()) == pytest.approx(
            pred.total_ms - pi.per_inference_us / 1e3, rel=1e-4)
        assert t.constraints == {}  # the Pi has no tight memory limit
    assert not (run_dir / "gauge.onnx").exists()  # nothing is timed for a predicted profile


@pytest.mark.slow
def test_device_without_fp32_only_samples_what_it_runs(tmp_path, teacher_dir, capsys):
    study, _ = _search(tmp_path, teacher_dir, "tpu", "coral-edge-tpu", trials=2)
    assert "cannot run fp32: not sampled" in capsys.readouterr().out
    assert [t.params["precision"] for t in study.trials] == ["int8", "int8"]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["energy_mj"] > 0
               for t in study.trials)


@pytest.mark.slow
def test_candidate_that_overflows_device_memory_is_infeasible(tmp_path, teacher_dir):
    """A made-up microcontroller with 2 KiB of RAM: no student's activations fit in it."""
    src = (resources.files("edgeshrink.hardware_profiles") / "profiles" / "stm32h7.toml")
    text = tmp_path / "tiny-mcu.toml"
    text.write_text(src.read_text().replace('name = "stm32h7"', 'name = "tiny-mcu"')
                    .replace("ram_bytes = 524288", "ram_bytes = 2048"))
    study, run_dir = _search(tmp_path, teacher_dir, "mcu", str(text), trials=2)
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        assert t.constraints["fits_memory"] > 0
        assert t.user_attrs["peak_activation_bytes"] > 2048
        assert any("RAM" in p for p in t.user_attrs["memory_problems"])
    # The report marks them infeasible with the reason.
    from edgeshrink.reports.dashboard import dashboard_frame

    frame = dashboard_frame(study)
    assert not frame["feasible"].any() and not frame["pareto"].any()
    assert frame["reason"].str.contains("activations need").all()


def test_profile_commands(capsys, tmp_path):
    assert main(["profile", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("host", "raspberry-pi-4", "phone-cortex-a76", "jetson-nano", "coral-edge-tpu",
                 "stm32h7"):
        assert f"\n{name} " in out
    assert main(["profile", "show", "stm32h7"]) == 0
    out = capsys.readouterr().out
    assert "RAM for activations 524,288 B" in out and "DS12110" in out

    g = GraphBuilder(np.random.default_rng(0))
    model = g.model([1, 1, 8, 8], g.conv("input", 1, 8, 3), [1, 8, 8, 8])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["profile", "predict", str(path), "--profile", "stm32h7", "--format",
                 "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = predict_latency(path, load_profile("stm32h7"))
    assert data["total_ms"] == pytest.approx(expected.total_ms) and len(data["layers"]) == 1
    assert main(["profile", "predict", str(path), "--profile", "raspberry-pi-4"]) == 0
    out = capsys.readouterr().out
    pi_ms = predict_latency(path, load_profile("raspberry-pi-4")).total_ms
    assert f"total on raspberry-pi-4: {pi_ms:.4f} ms" in out


@pytest.mark.parametrize("argv,message", [
    (["profile", "show", "pi9"], "unknown profile 'pi9'"),
    (["profile", "predict", "missing.onnx"], "model file missing.onnx does not exist"),
    (["profile", "predict", "{bad}", "--profile", "host"], "is not an ONNX model"),
    (["profile", "calibrate", "--out", "x.txt"], "--out must name a .toml file"),
    (["profile", "calibrate", "--out", "x.toml", "--precisions", "int3"], "--precisions"),
    (["search", "--profile", "pi9", "--trials", "1"], "unknown profile 'pi9'"),
])
def test_profile_command_errors_are_one_line(capsys, tmp_path, argv, message):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    argv = [a.replace("{bad}", str(bad)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
