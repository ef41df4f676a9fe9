import numpy as np
import pytest
import torch
from torch import nn

from edgeshrink.hardware_profiles import ProfileError, list_profiles, load_profile
from edgeshrink.hardware_profiles.gauge import Gauge, build_gauge_model, write_gauge_model
from edgeshrink.hardware_profiles.measure import calibrate_gauge, measure_latency
from edgeshrink.hardware_profiles.registry import Measurement


def test_host_profile_loads():
    assert "host" in list_profiles()
    p = load_profile("host")
    assert p.latency_method == "measured" and "int8" in p.precisions
    assert p.measurement.intra_op_threads == 1


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="unknown profile 'pi9'.*host"):
        load_profile("pi9")


@pytest.mark.parametrize(
    "text,field",
    [
        ('schema_version = 1\nname = "x"\ndescription = "d"\nkind = "cpu"\n'
         'latency_method = "measured"\n', "precisions"),
        ('schema_version = 2\nname = "x"\n', "schema_version"),
        ('schema_version = 1\nname = 3\ndescription = "d"\nkind = "cpu"\n'
         'latency_method = "measured"\nprecisions = ["fp32"]\n', "name"),
        ('schema_version = 1\nname = "x"\ndescription = "d"\nkind = "cpu"\n'
         'latency_method = "guess"\nprecisions = ["fp32"]\n', "latency_method"),
        ('schema_version = 1\nname = "x"\ndescription = "d"\nkind = "cpu"\n'
         'latency_method = "measured"\nprecisions = ["fp32"]\n[measurement]\n'
         'drift_correction = "magic"\n', "measurement.drift_correction"),
    ],
)
def test_bad_profile_file_names_the_field(tmp_path, text, field):
    path = tmp_path / "dev.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=f"'{field}'"):
        load_profile(str(path))


def test_bigger_model_measures_slower(tmp_path):
    paths = {}
    for name, width in (("small", 4), ("big", 64)):
        model = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(width, width, 3, padding=1))
        paths[name] = tmp_path / f"{name}.onnx"
        torch.onnx.export(model, (torch.zeros(1, 1, 32, 32),), str(paths[name]), dynamo=False)
    x = np.zeros((1, 1, 32, 32), np.float32)
    settings = Measurement(warmup_runs=5, min_runs=30, min_seconds=0.05)
    small = measure_latency(paths["small"], x, settings)
    big = measure_latency(paths["big"], x, settings)
    assert small.runs >= 30 and small.threads == 1
    assert small.p90_ms >= small.median_ms > 0
    # 256x more MACs: the measured gap is far beyond timing noise.
    assert big.median_ms > 5 * small.median_ms


def test_gauge_is_the_same_bytes_everywhere_and_runs(tmp_path):
    a = build_gauge_model(1, 16).SerializeToString()
    assert a == build_gauge_model(1, 16).SerializeToString()
    assert a != build_gauge_model(3, 16).SerializeToString()
    path = write_gauge_model(tmp_path / "g" / "gauge.onnx", 1, 16)
    mtime = path.stat().st_mtime_ns
    assert write_gauge_model(path, 1, 16) == path and path.stat().st_mtime_ns == mtime
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((2, 1, 16, 16), np.float32)})[0]
    assert out.shape == (2, 10) and np.isfinite(out).all()


def test_gauge_ratio_divides_out_the_host_speed(tmp_path):
    """The gauge timed against itself is 1.0 whatever the host's speed; a 256x bigger model is
    far slower; and the milliseconds are the ratio times the calibrated gauge latency."""
    gauge_path = write_gauge_model(tmp_path / "gauge.onnx", 1, 32)
    x = np.zeros((1, 1, 32, 32), np.float32)
    settings = Measurement(warmup_runs=5, min_runs=200, min_seconds=0.05)
    gauge = calibrate_gauge(gauge_path, x, settings, sessions=3)
    assert gauge.ms > 0
    self_ratio = measure_latency(gauge_path, x, settings, Gauge(str(gauge_path), 2.0))
    assert 0.85 < self_ratio.gauge_ratio < 1.15
    assert self_ratio.median_ms == pytest.approx(2.0 * self_ratio.gauge_ratio)
    big = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    torch.onnx.export(big, (torch.zeros(1, 1, 32, 32),), str(tmp_path / "big.onnx"), dynamo=False)
    r = measure_latency(tmp_path / "big.onnx", x, settings, gauge)
    assert r.gauge_ratio > 3 and r.raw_median_ms > 0 and r.p90_ms >= r.median_ms
