"""Per-kernel costs: the arithmetic, the profile table, the graph reading that names kernels,
the fit, and the sampled calibration networks."""

import re

import numpy as np
import onnx
import pytest
from profile_files import GOOD as BASE
from profile_files import write_profile

from edgeshrink.hardware_profiles import ProfileError
from edgeshrink.hardware_profiles.calibrate import Sample, fit_kernels
from edgeshrink.hardware_profiles.calibrate.networks import STAGES, space_network
from edgeshrink.hardware_profiles.graph_layers import Layer, analyse_graph
from edgeshrink.hardware_profiles.kernel_costs import kernel_key, kernel_ms, kernel_units
from edgeshrink.hardware_profiles.latency_model import predict_layers

DW = "QLinearConv depthwise int8"


def _depthwise(channels: int, size: int, k: int, kernel: str = "QLinearConv") -> Layer:
    macs = channels * size * size * k * k
    return Layer(name=f"dw{channels}", op_type="QLinearConv", op_class="depthwise",
                 precision="int8", macs=macs, activation_elements=2 * channels * size * size,
                 weight_elements=channels * k * k, weight_density=1.0, is_2to4=False,
                 output_elements=channels * size * size, in_channels=channels,
                 out_channels=channels, depthwise=True, kernel=kernel)


def test_kernel_cost_arithmetic_on_a_hand_checked_layer():
    """Depthwise, 20 channels, 8x8 output, 3x3: 576 MACs per channel. With vectors of 16:
    16 channels whole (9216 MACs), none in a half vector of 8, 4 single (2304 MACs);
    64 pixels, 20 channels, 180 weights. 1 us + 0.1*9216 + 0.5*2304 + 2*64 + 10*20 ns
    = 3401.6 ns; with 0.5 ns per weight, 90 ns more."""
    layer = _depthwise(20, 8, 3)
    assert kernel_units(layer, 16) == {"layer_us": 1.0, "mac_ns": 9216.0,
                                       "mac_single_ns": 2304.0, "pixel_ns": 64.0,
                                       "channel_ns": 20.0, "weight_ns": 180.0}
    costs = {"layer_us": 1.0, "mac_ns": 0.1, "mac_half_ns": 0.3, "mac_single_ns": 0.5,
             "pixel_ns": 2.0, "channel_ns": 10.0}
    assert kernel_ms(layer, costs, 16) == pytest.approx(3401.6e-6)
    assert kernel_ms(layer, {**costs, "weight_ns": 0.5}, 16) == pytest.approx(3491.6e-6)
    # 28 channels: one whole vector, one half (8 channels), 4 single.
    units = kernel_units(_depthwise(28, 8, 3), 16)
    assert (units["mac_ns"], units["mac_half_ns"], units["mac_single_ns"]) == (9216, 4608, 2304)


def test_a_missing_tail_rate_costs_those_macs_as_whole_vectors():
    layer = _depthwise(20, 8, 3)
    whole_only = {"mac_ns": 0.1}
    assert kernel_ms(layer, whole_only, 16) == pytest.approx((9216 + 2304) * 0.1e-6)
    # A fitted zero is a measurement ("free"), not a missing number.
    assert kernel_ms(layer, {"mac_ns": 0.1, "mac_single_ns": 0.0}, 16) == pytest.approx(
        9216 * 0.1e-6)


GOOD = BASE + """
[layout]
fusion = "onnxruntime_layout"
[kernels]
channel_vector = 16
"QLinearConv depthwise int8" = { layer_us = 1.0, mac_ns = 0.1, mac_single_ns = 0.5, \
pixel_ns = 2.0, channel_ns = 10.0 }
"""


def test_listed_kernels_use_the_table_and_the_rest_the_roofline(tmp_path):
    profile = write_profile(tmp_path, GOOD)
    assert profile.kernels[DW]["pixel_ns"] == 2.0 and profile.kernel_vector == 16
    listed, other = _depthwise(20, 8, 3), _depthwise(20, 8, 3, kernel="DepthwiseConvX")
    pred = predict_layers([listed, other], profile)
    assert [lt.bound for lt in pred.layers] == ["kernel", "compute"]
    assert pred.layers[0].ms == pytest.approx(3401.6e-6)
    # Roofline: 11520 MACs / (4 GMAC/s * 0.25) = 11.52 us, plus 2 us per layer.
    assert pred.layers[1].ms == pytest.approx(13.52e-3)
    assert pred.total_ms == pytest.approx(3401.6e-6 + 13.52e-3 + 10e-3)


@pytest.mark.parametrize("old,new,field", [
    ('fusion = "onnxruntime_layout"', 'fusion = "onnxruntime"', "kernels"),
    ("channel_vector = 16", "channel_vector = 0", "kernels.channel_vector"),
    ("pixel_ns = 2.0", "pixel_us = 2.0", 'kernels."QLinearConv depthwise int8".pixel_us'),
    ("pixel_ns = 2.0", "pixel_ns = -2.0", 'kernels."QLinearConv depthwise int8".pixel_ns'),
    ('"QLinearConv depthwise int8"', '"QLinearConv depthwise"', 'kernels."QLinearConv depthwise"'),
    ('"QLinearConv depthwise int8"', '"QLinearConv dw int8"', 'kernels."QLinearConv dw int8"'),
    ('"QLinearConv depthwise int8"', '"QLinearConv depthwise fp16"', "(precision)"),
])
def test_bad_kernel_table_names_the_field(tmp_path, old, new, field):
    assert old in GOOD
    with pytest.raises(ProfileError, match=re.escape(field)):
        write_profile(tmp_path, GOOD.replace(old, new, 1))


def test_fit_recovers_known_kernel_costs():
    """Timings made from known costs (and a per-inference overhead) are fitted back exactly:
    the fit is least squares on the very units the profile prices."""
    truth = {"layer_us": 1.5, "mac_ns": 0.05, "mac_half_ns": 0.2, "mac_single_ns": 0.4,
             "pixel_ns": 3.0, "channel_ns": 7.0, "weight_ns": 0.8}
    rng = np.random.default_rng(0)
    samples = []
    for i in range(60):
        layers = [_depthwise(int(rng.integers(4, 90)), int(rng.choice([4, 8, 16])),
                             int(rng.choice([3, 5, 7]))) for _ in range(int(rng.integers(1, 4)))]
        ms = 5e-3 + sum(kernel_ms(la, truth, 16) for la in layers)
        samples.append(Sample(f"s{i}", "int8", len(layers), layers, ms))
    fit = fit_kernels(samples, vector=16)
    assert fit.per_inference_us == pytest.approx(5.0, rel=1e-4)
    assert fit.kernels[DW] == pytest.approx(truth, rel=1e-4)
    assert fit.mape < 1e-6


def _ort_ops(model: onnx.ModelProto, tmp_path) -> set[str]:
    """The op types onnxruntime itself runs here (all rewrites), read independently."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options,
                         providers=["CPUExecutionProvider"])
    optimized = onnx.load(options.optimized_model_filepath)
    return {("nchwc." if n.domain == "com.microsoft.nchwc" else "") + n.op_type
            for n in optimized.graph.node}


def test_layout_reading_names_the_kernels_onnxruntime_runs(tmp_path):
    from edgeshrink.hardware_profiles.calibrate import _int8

    model, default, prefixes, symmetric = space_network(0)
    assert "int8" in {default, *prefixes.values()} and "fp32" in prefixes.values()
    src, mixed = tmp_path / "net.onnx", tmp_path / "net_int8.onnx"
    onnx.save(model, src)
    _int8(src, mixed, [1, 1, 16, 16], plan=(default, prefixes, symmetric))
    quantized = onnx.load(mixed)
    layers = analyse_graph(quantized, "onnxruntime_layout")
    kernels = {la.kernel for la in layers}
    assert "" not in kernels and kernels <= _ort_ops(quantized, tmp_path)
    assert "QLinearConv" in kernels  # the int8 stages run int8 kernels
    assert all(kernel_key(la).split(" ")[2] == la.precision for la in layers)
    # The other readings name no kernels; this one sees at least every layer they see.
    portable = analyse_graph(quantized, "onnxruntime")
    assert {la.kernel for la in portable} == {""}
    convs = ("conv", "depthwise", "pointwise", "matmul")
    assert (sum(la.macs for la in layers if la.op_class in convs)
            >= sum(la.macs for la in portable if la.op_class in convs) > 0)


def test_sampled_calibration_networks_follow_the_default_space():
    """The torch-free sampler mirrors spaces/default_space.yaml (it cannot import it)."""
    from edgeshrink.hardware_profiles.calibrate import networks as nets
    from edgeshrink.spaces.space import load_space

    space = load_space()
    d = space.distributions
    assert list(space.stage_skeleton) == [(c, s) for c, s, _ in STAGES]
    assert [d[f"stage{i}_type"].choices for i in range(4)] == [t for _, _, t in STAGES]
    assert (space.stem_channels, space.head_channels, space.input_resolution) == (
        nets.STEM_CHANNELS, nets.HEAD_CHANNELS, nets.RESOLUTION)
    k = d["stage0_kernel"]
    assert tuple(range(k.low, k.high + 1, k.step)) == nets.KERNELS
    assert d["stage0_expansion"].choices == nets.EXPANSIONS
    assert d["stage0_activation"].choices == nets.ACTIVATIONS
    w = d["width_mult"]
    assert tuple(np.arange(w.low, w.high + 1e-9, w.step)) == nets.WIDTHS
    a, b = space_network(5), space_network(5)
    assert a[0].SerializeToString() == b[0].SerializeToString() and a[1:] == b[1:]
    onnx.checker.check_model(a[0])
