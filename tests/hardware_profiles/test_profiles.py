import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from profile_files import GOOD
from profile_files import write_profile as _profile
from torch import nn

from edgeshrink.hardware_profiles import ProfileError, list_profiles, load_profile
from edgeshrink.hardware_profiles.gauge import Gauge, build_gauge_model, write_gauge_model
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.hardware_profiles.measure import calibrate_gauge, measure_latency
from edgeshrink.hardware_profiles.onnx_builder import GraphBuilder
from edgeshrink.hardware_profiles.registry import OP_CLASSES, Measurement


def test_host_profile_loads():
    assert "host" in list_profiles()
    p = load_profile("host")
    assert p.latency_method == "measured" and "int8" in p.precisions
    assert p.measurement.intra_op_threads == 1


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="unknown profile 'pi9'.*host"):
        load_profile("pi9")


def test_every_builtin_profile_loads_and_cites_its_numbers():
    names = list_profiles()
    assert {"host", "raspberry-pi-4", "phone-cortex-a76", "jetson-nano", "coral-edge-tpu",
            "stm32h7"} <= set(names)
    for name in names:
        p = load_profile(name)
        assert p.name == name and p.sources, name
        assert set(p.efficiency) == set(OP_CLASSES)
    assert load_profile("coral-edge-tpu").precisions == ("int8",)
    assert load_profile("stm32h7").ram_bytes == 512 * 1024


def test_good_profile_file_loads(tmp_path):
    p = _profile(tmp_path)
    assert p.precisions == ("fp32", "int8") and p.peak_gmacs["int8"] == 4.0
    assert p.efficiency_for("depthwise", "int8") == 0.25 and p.layer_overhead_us("int8") == 2.0
    assert p.sparsity_support == "none" and not p.has_energy


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("schema_version = 2", "schema_version = 1", "schema_version"),
        ('name = "dev"', "name = 3", "name"),
        ('kind = "cpu"', 'kind = "fpga"', "kind"),
        ('latency_method = "predicted"', 'latency_method = "guess"', "latency_method"),
        ("fp32 = 1.0", "fp3 = 1.0", "compute.fp3"),
        ("int8 = 4.0", "int8 = -4.0", "compute.int8"),
        ("bandwidth_gbps = 1.0", 'bandwidth_gbps = "fast"', "memory.bandwidth_gbps"),
        ("conv = 0.5", "conv = 1.5", "efficiency.conv"),
        ("pooling = 0.5", "", "efficiency.pooling"),
        ("per_layer_us = 2.0", "", "overhead.per_layer_us"),
        ('sources = ["[1] made up for a test"]', "", "sources"),
        ("pooling = 0.5", 'pooling = 0.5\n[sparsity]\nsupport = "magic"', "sparsity.support"),
        ("pooling = 0.5", 'pooling = 0.5\n[measurement]\ndrift_correction = "magic"',
         "measurement.drift_correction"),
        ("pooling = 0.5", "pooling = 0.5\n[efficiency.fp16]\nconv = 0.5", "efficiency.fp16"),
        ("pooling = 0.5", "pooling = 0.5\n[layout]\nchannel_block = 0", "layout.channel_block"),
        ("pooling = 0.5", "pooling = 0.5\n[layout]\nchannel_blok = 4", "layout.channel_blok"),
        ("pooling = 0.5", 'pooling = 0.5\n[layout]\nfusion = "tflite"', "layout.fusion"),
    ],
)
def test_bad_profile_file_names_the_field(tmp_path, old, new, field):
    assert old in GOOD
    path = tmp_path / "dev.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ProfileError, match=f"'{re.escape(field)}'"):
        load_profile(str(path))


def test_profile_that_is_not_toml_says_so(tmp_path):
    path = tmp_path / "dev.toml"
    path.write_text("schema_version = = 2\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(path))


def _single_conv(cin: int, cout: int, size: int, k: int, groups: int = 1,
                 weights: np.ndarray | None = None) -> onnx.ModelProto:
    g = GraphBuilder(np.random.default_rng(0))
    x = g.conv("input", cin, cout, k, groups=groups)
    model = g.model([1, cin, size, size], x, [1, cout, size, size])
    if weights is not None:
        w = model.graph.initializer[0]
        w.CopyFrom(numpy_helper.from_array(weights.astype(np.float32), w.name))
    return model


def test_roofline_arithmetic_on_a_hand_checked_conv(tmp_path):
    """Conv 1->8, 3x3, 8x8, fp32, ReLU fused: MACs 8*8*8*9 = 4608.
    Compute: 4608 / (1 GMAC/s * 0.5) = 9.216 us. Bytes: (64 in + 512 out + 72 weights) * 4 =
    2592 B at 1 GB/s = 2.592 us, so compute bound. Total 9.216 + 2 (layer) + 10 (inference)."""
    pred = predict_latency(_single_conv(1, 8, 8, 3), _profile(tmp_path))
    (layer,) = pred.layers
    assert (layer.op_class, layer.precision, layer.macs, layer.bytes) == ("conv", "fp32", 4608,
                                                                          2592)
    assert layer.bound == "compute"
    assert layer.ms == pytest.approx(0.011216)
    assert pred.total_ms == pytest.approx(0.021216)
    assert pred.weight_bytes == 288 and pred.peak_activation_bytes == 576 * 4
    # A depthwise 8-channel 3x3 at 8x8: 4608 MACs at efficiency 0.25 -> 18.432 us compute;
    # bytes (512 + 512 + 72) * 4 = 4384 -> 4.384 us.
    dw = predict_latency(_single_conv(8, 8, 8, 3, groups=8), _profile(tmp_path))
    assert dw.layers[0].op_class == "depthwise"
    assert dw.total_ms == pytest.approx((18.432 + 2 + 10) / 1e3)
    # Starve the bandwidth: the same conv becomes memory bound, 2592 B at 0.1 GB/s = 25.92 us.
    slow = _profile(tmp_path, GOOD.replace("bandwidth_gbps = 1.0", "bandwidth_gbps = 0.1"))
    mem = predict_latency(_single_conv(1, 8, 8, 3), slow)
    assert mem.layers[0].bound == "memory"
    assert mem.total_ms == pytest.approx((25.92 + 2 + 10) / 1e3)


def test_kernels_that_pad_channels_to_blocks_pay_for_the_padding(tmp_path):
    """Conv 1->12 at 8x8: 6912 MACs. With blocks of 16 the 12 output channels cost as 16 (the
    single input channel as 16 too): 6912 * 16/12 * 16 = 147456 MACs at 0.5 GMAC/s = 294.912 us;
    per-precision blocks override the default."""
    model = _single_conv(1, 12, 8, 3)
    plain = predict_latency(model, _profile(tmp_path))
    assert plain.layers[0].effective_macs == 6912
    blocked = _profile(tmp_path, GOOD + "[layout]\nchannel_block = 16\nchannel_block_int8 = 4\n")
    assert blocked.block_for("fp32") == 16 and blocked.block_for("int8") == 4
    pred = predict_latency(model, blocked)
    assert pred.layers[0].effective_macs == 147456
    assert pred.total_ms == pytest.approx((294.912 + 2 + 10) / 1e3)
    # A depthwise layer pads only its channels: 12 -> 16.
    dw = predict_latency(_single_conv(12, 12, 8, 3, groups=12), blocked).layers[0]
    assert dw.effective_macs == 12 * 64 * 9 * 16 // 12


def test_layers_off_the_channel_block_use_their_own_efficiency(tmp_path):
    """Blocks of 16 and unaligned shares: conv 12->16 reads 12 channels, off the block, so it
    runs at the unaligned conv share (0.1 instead of 0.5); 16->16 stays aligned; the stem
    (1 input channel) reads the image and counts as aligned."""
    text = GOOD + ("[layout]\nchannel_block = 16\n[efficiency.unaligned]\nconv = 0.1\n"
                   "[efficiency.int8.unaligned]\nconv = 0.05\n")
    text = text.replace("pooling = 0.5\n", "pooling = 0.5\n[efficiency.int8]\nconv = 0.25\n", 1)
    p = _profile(tmp_path, text)
    assert p.efficiency_for("conv", "fp32", "unaligned") == 0.1
    assert p.efficiency_for("conv", "int8", "unaligned") == 0.05
    assert p.efficiency_for("pointwise", "fp32", "unaligned") == 0.5  # falls back
    # No generic-kernel numbers: a layer on run-time weights falls back to the unaligned share.
    assert p.efficiency_for("conv", "int8", "generic") == 0.05
    generic = _profile(tmp_path, text + "[efficiency.generic]\nconv = 0.02\n")
    assert generic.efficiency_for("conv", "fp32", "generic") == 0.02
    assert generic.efficiency_for("conv", "fp32", "unaligned") == 0.1
    off = predict_latency(_single_conv(12, 16, 8, 3), p).layers[0]
    on = predict_latency(_single_conv(16, 16, 8, 3), p).layers[0]
    stem = predict_latency(_single_conv(1, 16, 8, 3), p).layers[0]
    # 12->16 pads to 16->16: same MACs as the aligned layer, at a fifth of the rate.
    assert off.effective_macs == on.effective_macs == 16 * 16 * 64 * 9
    assert off.ms - 0.002 == pytest.approx(5 * (on.ms - 0.002))
    assert stem.ms - 0.002 == pytest.approx(16 * 64 * 9 * 16 / 0.5e9 * 1e3)


def _int8_file(tmp_path, model: onnx.ModelProto, name: str) -> Path:
    from edgeshrink.spaces.quantization.onnx_qdq import int8_static

    src = tmp_path / f"{name}.onnx"
    onnx.save(model, src)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    out = tmp_path / f"{name}_int8.onnx"
    int8_static(src, out, np.random.default_rng(0).normal(size=(8, *dims[1:])).astype(
        np.float32))
    return out


def test_int8_runs_faster_where_the_device_has_int8_throughput(tmp_path):
    model = _single_conv(16, 32, 16, 3)
    int8 = _int8_file(tmp_path, model, "conv")
    layers = analyse_graph(int8)
    assert [la.precision for la in layers] == ["int8"]
    pi = load_profile("raspberry-pi-4")
    fp, q = predict_latency(model, pi), predict_latency(int8, pi)
    assert q.total_ms < fp.total_ms and q.weight_bytes * 4 == fp.weight_bytes
    with pytest.raises(ProfileError, match="cannot run fp32"):
        predict_latency(model, load_profile("coral-edge-tpu"))
    assert predict_latency(int8, load_profile("coral-edge-tpu")).energy_mj > 0


def test_sparsity_helps_only_where_the_profile_can_use_it(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 64, 1, 1))
    w24 = w.reshape(64, 16, 4).copy()
    w24[:, :, :2] = 0.0  # two zeros in every group of four inputs
    sparse = _single_conv(64, 64, 16, 1, weights=w24.reshape(64, 64, 1, 1))
    dense = _single_conv(64, 64, 16, 1, weights=w)
    assert analyse_graph(sparse)[0].is_2to4 and not analyse_graph(dense)[0].is_2to4
    none = _profile(tmp_path)
    assert predict_latency(sparse, none).total_ms == pytest.approx(
        predict_latency(dense, none).total_ms)
    two_four = _profile(tmp_path, GOOD + '[sparsity]\nsupport = "2:4"\n')
    assert predict_latency(sparse, two_four).layers[0].effective_macs == 64 * 64 * 256 // 2
    assert predict_latency(sparse, two_four).total_ms < predict_latency(dense, two_four).total_ms
    # Unstructured support pays only above its density threshold: 50% zeros < 70% required.
    unstructured = _profile(
        tmp_path, GOOD + '[sparsity]\nsupport = "unstructured"\nmin_sparsity = 0.7\n')
    assert predict_latency(sparse, unstructured).total_ms == pytest.approx(
        predict_latency(dense, unstructured).total_ms)
    w80 = np.where(rng.random(w.shape) < 0.8, 0.0, w)
    sparse80 = _single_conv(64, 64, 16, 1, weights=w80)
    assert predict_latency(sparse80, unstructured).total_ms < predict_latency(
        dense, unstructured).total_ms


def test_microcontroller_rejects_what_does_not_fit(tmp_path):
    mcu = load_profile("stm32h7")
    small = predict_latency(_single_conv(1, 8, 16, 3), mcu)
    assert small.fits_memory and small.memory_problems == ()
    # 256 channels at 64x64 fp32: 4 MiB of output activations > 512 KiB of SRAM.
    wide = predict_latency(_single_conv(1, 256, 64, 3), mcu)
    assert not wide.fits_memory
    assert any("RAM" in p for p in wide.memory_problems)
    # 1024x1024x3x3 weights (9.4M params) cannot fit 2 MiB of flash even at int8.
    g = GraphBuilder(np.random.default_rng(0))
    heavy = g.model([1, 1024, 1, 1], g.conv("input", 1024, 1024, 3), [1, 1024, 1, 1])
    assert any("storage" in p for p in predict_latency(heavy, mcu).memory_problems)


@pytest.mark.slow
def test_calibrate_then_load_round_trip(tmp_path):
    """A reduced micro-benchmark set (one sampled network, timed at its own mixed precisions):
    the written file loads, and predicts what the fit does."""
    from edgeshrink.hardware_profiles.calibrate import MicroBench, build_micro_model, calibrate

    benches = (MicroBench("conv", 8, 16), MicroBench("pointwise", 32, 8, 1),
               MicroBench("depthwise", 48, 8, 3), MicroBench("matmul", 128, 128),
               MicroBench("elementwise", 16, 16), MicroBench("pooling", 64, 8),
               MicroBench("ir_block", 16, 8, 3, 3), MicroBench("space_net", 0, 16, seed=0))
    settings = Measurement(warmup_runs=3, min_runs=20, min_seconds=0.01, drift_correction="none")
    out = tmp_path / "cal" / "mine.toml"
    profile, fit = calibrate(out, name="mine", precisions=("fp32", "int8"), settings=settings,
                             benchmarks=benches)
    assert out.is_file() and not list(out.parent.glob(".*partial*"))
    again = load_profile(str(out))
    assert again == profile and again.name == "mine" and again.precisions == ("fp32", "int8")
    assert again.latency_method == "predicted" and again.fusion == "onnxruntime_layout"
    assert fit.mape < 0.5
    # 7 operators/blocks x chains of 1 and 4 x (fp32, uint8, symmetric int8), and the network
    # once, quantized by its own plan.
    assert "43 micro-benchmark timings" in out.read_text()
    for bench in benches[:-1]:
        model = build_micro_model(bench, 4)
        layers = [la for la in analyse_graph(model, again.fusion) if la.macs > 0]
        assert predict_latency(model, again).total_ms == pytest.approx(fit.predict_ms(layers),
                                                                       rel=0.01)


def test_calibration_needs_no_torch(tmp_path):
    """The device may have only onnxruntime and numpy: import and fit with torch blocked."""
    code = (
        "import sys\n"
        "sys.modules.update(torch=None, torchvision=None, optuna=None, yaml=None, pandas=None)\n"
        "from pathlib import Path\n"
        "from edgeshrink.hardware_profiles.calibrate import MicroBench, calibrate\n"
        "from edgeshrink.hardware_profiles.registry import Measurement\n"
        "s = Measurement(warmup_runs=2, min_runs=5, min_seconds=0.0, drift_correction='none')\n"
        f"calibrate(Path({str(tmp_path / 'p.toml')!r}), settings=s,\n"
        "          benchmarks=(MicroBench('conv', 8, 8), MicroBench('pointwise', 16, 8, 1),\n"
        "                      MicroBench('space_net', 0, 16, seed=2)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    written = load_profile(str(tmp_path / "p.toml"))
    assert written.precisions == ("fp32", "int8") and written.kernels


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


@pytest.mark.parametrize("block,kwargs", [
    ("ir", dict(kernel=5, stride=1, expansion=4, se=True, act="hswish")),
    ("ir", dict(kernel=7, stride=2, expansion=1, se=False, act="relu6")),
    ("ds", dict(kernel=3, stride=1, expansion=1, se=True, act="relu6")),
])
def test_calibration_blocks_cost_what_the_search_space_exports(tmp_path, block, kwargs):
    """The torch-free micro-benchmark blocks must be the graphs the search really exports, or
    calibration fits kernels the candidates never run."""
    from edgeshrink.spaces.blocks import BLOCKS
    from edgeshrink.spaces.bn_folding import fold_batchnorm

    chs, size = 24, 8
    torch_block = BLOCKS[block](chs, chs, **kwargs).eval()
    torch.onnx.export(fold_batchnorm(torch_block), (torch.zeros(1, chs, size, size),),
                      str(tmp_path / "t.onnx"), opset_version=17, dynamo=False)
    g = GraphBuilder(np.random.default_rng(0))
    k, st, se, act = kwargs["kernel"], kwargs["stride"], kwargs["se"], kwargs["act"]
    if block == "ir":
        out = g.inverted_residual("input", chs, chs, kwargs["expansion"], st, k, se, act)
    else:
        out = g.separable("input", chs, chs, st, k, se, act)
    half = size // st
    onnx.save(g.model([1, chs, size, size], out, [1, chs, half, half]), tmp_path / "b.onnx")

    def costs(name):
        return [(la.op_type, la.op_class, la.macs, la.weight_elements)
                for la in analyse_graph(tmp_path / name)]

    assert costs("b.onnx") == costs("t.onnx")
    assert len(costs("b.onnx")) >= 2


def _quantized(tmp_path, model: onnx.ModelProto, name: str, plan) -> Path:
    from edgeshrink.spaces.quantization.onnx_qdq import quantize_with_plan

    src, out = tmp_path / f"{name}_fp32.onnx", tmp_path / f"{name}.onnx"
    onnx.save(model, src)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    quantize_with_plan(src, out, np.random.default_rng(0).normal(size=(8, *dims[1:])).astype(
        np.float32), plan)
    return out


def test_onnxruntime_reading_prices_what_onnxruntime_fuses(tmp_path):
    """A conv with hard-swish. uint8 activations: onnxruntime fuses the QDQ conv into
    QLinearConv. Symmetric int8 activations: it has no such kernel on x86, so the conv runs in
    float on weights dequantized at run time, between real Quantize / Dequantize operators;
    the qdq reading sees an int8 conv in both files."""
    from edgeshrink.spaces.quantization.plan import QuantPlan

    g = GraphBuilder(np.random.default_rng(0))
    model = g.model([1, 16, 8, 8], g.conv("input", 16, 32, 3, act="hswish"), [1, 32, 8, 8])
    macs = 32 * 64 * 16 * 9
    uint8 = _quantized(tmp_path, model, "u8", QuantPlan("int8"))
    sym = _quantized(tmp_path, model, "s8", QuantPlan("int8", act_symmetric=True))
    for path in (uint8, sym):
        (qdq,) = [la for la in analyse_graph(path) if la.op_class == "conv"]
        assert (qdq.op_type, qdq.precision, qdq.macs) == ("Conv", "int8", macs)
    fused = analyse_graph(uint8, "onnxruntime")
    (conv,) = [la for la in fused if la.op_class == "conv"]
    assert (conv.op_type, conv.precision, conv.macs, conv.runtime_weights) == (
        "QLinearConv", "int8", macs, False)
    unfused = analyse_graph(sym, "onnxruntime")
    (conv,) = [la for la in unfused if la.op_class == "conv"]
    assert (conv.op_type, conv.precision, conv.macs) == ("Conv", "fp32", macs)
    assert conv.runtime_weights and conv.path(16) == "generic"

    def converts(layers):
        return [la for la in layers if la.op_type in ("QuantizeLinear", "DequantizeLinear")]

    # Weights and bias dequantized at run time, activations round-tripped around the float ops.
    assert len(converts(unfused)) > len(converts(fused)) >= 2
    assert {la.op_class for la in converts(unfused)} == {"elementwise"}
    # Priced on a profile that reads onnxruntime's graph, the unfused file costs more.
    profile = _profile(tmp_path, GOOD + '[layout]\nfusion = "onnxruntime"\n')
    assert profile.fusion == "onnxruntime"
    assert predict_latency(sym, profile).total_ms > predict_latency(uint8, profile).total_ms
    assert len(predict_latency(sym, profile).layers) == len(unfused)


def test_mixed_precision_boundaries_are_layers_in_the_onnxruntime_reading(tmp_path):
    from edgeshrink.hardware_profiles.calibrate import FRONT, MicroBench, build_micro_model
    from edgeshrink.spaces.quantization.plan import QuantPlan

    model = build_micro_model(MicroBench("net", 8, 16, 3, 3), 1)
    mixed = _quantized(tmp_path, model, "mixed", QuantPlan("fp32", {FRONT: "int8"}))
    qdq, ort = analyse_graph(mixed), analyse_graph(mixed, "onnxruntime")
    assert {la.precision for la in qdq} == {"fp32", "int8"}
    int8_kernels = [la for la in ort if la.op_type.startswith("QLinear")]
    assert int8_kernels and all(la.precision == "int8" for la in int8_kernels)
    # MACs of the compute layers agree between the readings; only conversions are added.
    def macs(layers):
        return sum(la.macs for la in layers
                   if la.op_class in ("conv", "depthwise", "pointwise", "matmul"))
    assert macs(ort) == macs(qdq) > 0
    assert any(la.op_type == "QuantizeLinear" for la in ort)
    assert not any(la.op_type == "QuantizeLinear" for la in qdq)


def test_an_int4_layer_moves_its_activations_at_a_byte_each():
    """int4 is a weight format: the kernels read and write int8 activations, so memory time and
    the RAM check count activations at 1 B and only the weights at half a byte."""
    from edgeshrink.hardware_profiles.graph_layers import Layer

    def layer(precision: str) -> Layer:
        return Layer("l", "Conv", "conv", precision, macs=1000, activation_elements=100,
                     weight_elements=50, weight_density=1.0, is_2to4=False, output_elements=50)

    assert layer("int4").bytes_moved() == 100 * 1.0 + 50 * 0.5
    assert layer("int8").bytes_moved() == 150 and layer("fp32").bytes_moved() == 600
