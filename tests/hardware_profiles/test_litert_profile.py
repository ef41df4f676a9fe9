"""The LiteRT runtime on the profile side: the schema field, the `host-litert` profile, the graph
reading its kernels are named by, the shared fit on that reading, and the int8 policy."""

import numpy as np
import pytest
from profile_files import GOOD, write_profile

from edgeshrink.hardware_profiles import ProfileError, load_profile
from edgeshrink.hardware_profiles.calibrate import Sample, fit_kernels
from edgeshrink.hardware_profiles.calibrate.networks import space_network
from edgeshrink.hardware_profiles.cpu import parse_cpuinfo
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.int8_arithmetic import int8_arithmetic
from edgeshrink.hardware_profiles.kernel_costs import kernel_key, kernel_ms
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.hardware_profiles.onnx_builder import GraphBuilder
from edgeshrink.hardware_profiles.runtimes import RUNTIMES

EPYC_AVX2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu avx avx2 fma\n"


def test_host_litert_is_measured_with_litert_and_predicts_with_its_reading():
    p = load_profile("host-litert")
    assert p.latency_method == "measured" and p.measurement.runtime == "litert"
    assert p.measurement.intra_op_threads == 1 and p.measurement.drift_correction == "gauge"
    assert p.precisions == ("fp32", "int8") and p.fusion == "litert"
    assert p.kernels and p.calibrated_on is not None
    assert all(key.split(" ")[0] in {"Conv", "Gemm", "Add", "Mul", "HardSwish", "HardSigmoid",
                                      "GlobalAveragePool", "Clip", "Relu"} for key in p.kernels)
    # Every other profile keeps onnxruntime, the default.
    assert load_profile("host").measurement.runtime == "onnxruntime"


def test_an_unknown_runtime_is_named_in_one_line(tmp_path):
    text = GOOD.replace('"predicted"', '"measured"') + '[measurement]\nruntime = "tvm"\n'
    with pytest.raises(ProfileError, match=r"field 'measurement\.runtime' must be one of "
                                           r"\['onnxruntime', 'litert'\], got 'tvm'"):
        write_profile(tmp_path, text)
    text = GOOD.replace('"predicted"', '"measured"') + '[measurement]\nruntime = "litert"\n'
    assert write_profile(tmp_path, text).measurement.runtime == "litert"


def test_kernel_tables_need_a_reading_that_names_kernels(tmp_path):
    table = '[kernels]\n"Conv conv fp32" = { layer_us = 1.0 }\n'
    with pytest.raises(ProfileError, match="kernels.*'onnxruntime_layout', 'litert'.*'qdq'"):
        write_profile(tmp_path, GOOD + '[layout]\nfusion = "qdq"\n' + table)
    p = write_profile(tmp_path, GOOD + '[layout]\nfusion = "litert"\n' + table)
    assert p.kernels == {"Conv conv fp32": {"layer_us": 1.0}}


def _block_graph():
    """conv + ReLU6, conv + hard-swish, an SE gate: what fuses differs between readings."""
    g = GraphBuilder(np.random.default_rng(0))
    x = g.conv("input", 1, 8, 3, act="relu6")
    x = g.conv(x, 8, 8, 3, groups=8, act="hswish")
    x = g.squeeze_excite(x, 8)
    return g.model([1, 1, 8, 8], x, [1, 8, 8, 8])


def test_litert_reading_fuses_only_relus_and_names_each_kernel():
    layers = analyse_graph(_block_graph(), "litert")
    assert [kernel_key(la) for la in layers] == [
        "Conv conv fp32", "Conv depthwise fp32", "HardSwish elementwise fp32",
        "GlobalAveragePool pooling fp32", "Conv pointwise fp32", "Conv pointwise fp32",
        "HardSigmoid elementwise fp32", "Mul elementwise fp32"]
    # The device-independent reading fuses hard-swish and hard-sigmoid too, and names nothing.
    qdq = analyse_graph(_block_graph(), "qdq")
    assert len(qdq) == len(layers) - 2 and not any(la.kernel for la in qdq)


def test_the_shared_fit_recovers_known_costs_on_the_litert_reading():
    """Timings made from known per-kernel costs of sampled networks, read as LiteRT runs them,
    are fitted back: held-out networks are predicted to within 0.1%."""
    rng = np.random.default_rng(1)
    graphs = [[la for la in analyse_graph(space_network(seed)[0], "litert") if la.macs > 0]
              for seed in range(90)]
    keys = sorted({kernel_key(la) for layers in graphs for la in layers})
    truth = {k: {"layer_us": float(rng.uniform(0.2, 3.0)), "mac_ns": float(rng.uniform(0.01, 0.5))}
             for k in keys}

    def ms(layers):
        return 8e-3 + sum(kernel_ms(la, truth[kernel_key(la)], 16) for la in layers)

    fit = fit_kernels([Sample(f"n{i}", "fp32", 1, layers, ms(layers))
                       for i, layers in enumerate(graphs[:75])])
    assert fit.mape < 1e-4
    held_out = graphs[75:]
    predicted = np.array([fit.predict_ms(layers) for layers in held_out])
    assert predicted == pytest.approx([ms(layers) for layers in held_out], rel=1e-3)


def test_host_litert_predicts_onnx_files_with_its_kernel_table(tmp_path):
    import onnx

    path = tmp_path / "net.onnx"
    onnx.save(space_network(3)[0], path)
    profile = load_profile("host-litert")
    prediction = predict_latency(path, profile)
    assert prediction.total_ms > 0
    layers = analyse_graph(path, "litert")
    bounds = [lt.bound == "kernel" for lt in prediction.layers]
    assert bounds == [kernel_key(la) in profile.kernels for la in layers] and any(bounds)


def test_litert_scores_int8_in_reference_arithmetic_on_any_cpu():
    """XNNPACK's int8 kernels do not saturate: no 7-bit weights, reference accuracy."""
    epyc = parse_cpuinfo(EPYC_AVX2, "x86_64")
    assert epyc.int8_saturates
    litert = int8_arithmetic(load_profile("host-litert"), epyc)
    assert (litert.accuracy_method, litert.reduce_range) == ("reference", False)
    assert int8_arithmetic(load_profile("host"), epyc).reduce_range


def test_a_missing_runtime_module_is_named_with_its_install_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "litert_torch" else real(name, *a))
    line = RUNTIMES["litert"].missing("--profile host-litert")
    assert line == ("--profile host-litert needs LiteRT (litert_torch is not installed): pip "
                    'install -c constraints.txt "edgeshrink[tflite]" (or -e ".[tflite]" in a '
                    "checkout)")
    assert RUNTIMES["onnxruntime"].missing("--profile host") is None


def test_calibrate_refuses_an_unknown_or_missing_runtime_before_timing(tmp_path, monkeypatch):
    import importlib.util

    from edgeshrink.hardware_profiles.commands import calibrate_command

    out = tmp_path / "dev.toml"
    with pytest.raises(ProfileError, match=r"--runtime must be one of \['onnxruntime', 'litert'\]"):
        calibrate_command(out, None, "cpu", "fp32", True, runtime="tvm")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a))
    with pytest.raises(ProfileError, match=r"--runtime litert needs LiteRT \(ai_edge_litert"):
        calibrate_command(out, None, "cpu", "fp32", True, runtime="litert")
    assert not out.exists()
