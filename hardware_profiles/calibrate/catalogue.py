"""What calibration times: the micro-benchmarks (operators, blocks, small and sampled
networks) and the ONNX graph of each."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import onnx

from edgeshrink.hardware_profiles.calibrate.networks import space_network
from edgeshrink.hardware_profiles.onnx_builder import GraphBuilder

CHAIN_LENGTHS = (1, 4)
GAUGE_INPUT = (1, 1, 16, 16)  # the drift gauge is built for the default data's shape
# The micro-benchmarks are timed with onnxruntime on this machine: read the graph it runs here.
FUSION = "onnxruntime_layout"


@dataclass(frozen=True)
class MicroBench:
    op_class: str
    channels: int
    size: int  # spatial size (height = width), or input features for a linear layer
    kernel: int = 3
    expansion: int = 1  # blocks only
    stride: int = 1
    se: bool = False  # blocks and networks: squeeze-excitation after the depthwise conv
    act: str = "relu"  # blocks and networks: relu, relu6 or hswish
    seed: int = 0  # space_net: which sampled network (calibrate.networks)

    @property
    def label(self) -> str:
        if self.op_class == "space_net":
            return f"space_net_{self.seed}"
        return (f"{self.op_class}_c{self.channels}_s{self.size}_k{self.kernel}"
                f"_e{self.expansion}_st{self.stride}" + ("_se" if self.se else "")
                + ("" if self.act == "relu" else f"_{self.act}"))


# Sizes cover the search space's layers (16x16 inputs, 8-384 channels) and beyond.
MICRO_BENCHMARKS: tuple[MicroBench, ...] = (
    *(MicroBench("conv", c, s) for c, s in ((8, 16), (16, 16), (16, 32), (32, 8), (64, 8))),
    *(MicroBench("pointwise", c, s, 1) for c, s in ((16, 16), (32, 16), (48, 16), (64, 8),
                                                    (96, 8), (192, 4), (384, 4))),
    *(MicroBench("depthwise", c, s, k) for c, s, k in ((48, 16, 3), (48, 16, 5), (96, 8, 3),
                                                       (96, 8, 5), (144, 8, 3), (192, 4, 3),
                                                       (384, 4, 5))),
    *(MicroBench("matmul", f, f) for f in (128, 256, 512)),
    *(MicroBench("elementwise", c, s) for c, s in ((16, 16), (24, 8), (64, 4), (32, 32))),
    *(MicroBench("pooling", c, s) for c, s in ((128, 4), (128, 8), (64, 16))),
    # Operators in context: inverted-residual and depthwise-separable blocks, where channel
    # counts change between layers and strided depthwise layers appear, as in real networks.
    *(MicroBench("ir_block", c, s, k, e, st) for c, s, k, e, st in (
        (8, 16, 3, 3, 1), (8, 16, 5, 6, 2), (16, 16, 3, 6, 1), (16, 8, 5, 3, 1),
        (24, 8, 3, 6, 2), (32, 4, 5, 6, 1), (12, 16, 5, 3, 2), (32, 8, 3, 3, 2))),
    *(MicroBench("ds_block", c, s, k, 1, st) for c, s, k, st in (
        (8, 16, 3, 1), (16, 16, 5, 2), (24, 8, 3, 1), (32, 8, 5, 2), (64, 4, 3, 1))),
    # Channel counts off the multiples of 8 and 16 reveal kernels that pad channels to blocks.
    MicroBench("conv", 12, 16), MicroBench("pointwise", 18, 16, 1),
    MicroBench("pointwise", 36, 8, 1), MicroBench("pointwise", 72, 4, 1),
    MicroBench("depthwise", 18, 16, 3), MicroBench("depthwise", 36, 8, 5),
    MicroBench("depthwise", 72, 4, 3), MicroBench("ir_block", 12, 16, 3, 6),
    MicroBench("ir_block", 18, 8, 5, 3, 2),
    # The rest of the block space: kernel 7, expansion 1 and 4, squeeze-excitation (pooling,
    # two tiny 1x1 convs, a gate and a multiply), ReLU6 and hard-swish activations.
    MicroBench("depthwise", 48, 16, 7), MicroBench("depthwise", 96, 8, 7),
    # Few channels at full resolution, as in depthwise-separable blocks of narrow students:
    # onnxruntime's int8 depthwise kernels run these at a fraction of their usual rate.
    *(MicroBench("depthwise", c, 16, k) for c, k in ((8, 5), (12, 3), (12, 7), (24, 5))),
    *(MicroBench("ir_block", c, s, k, e, st, se, act) for c, s, k, e, st, se, act in (
        (16, 16, 3, 6, 1, True, "relu6"), (24, 8, 5, 4, 2, True, "hswish"),
        (32, 4, 7, 6, 1, True, "relu6"), (16, 16, 5, 3, 1, False, "hswish"),
        (12, 16, 7, 4, 2, False, "hswish"), (24, 8, 7, 1, 1, False, "relu6"),
        (16, 16, 3, 4, 2, True, "hswish"))),
    *(MicroBench("ds_block", c, s, k, 1, st, se, act) for c, s, k, st, se, act in (
        (16, 16, 7, 2, True, "relu6"), (32, 8, 3, 1, False, "hswish"),
        (24, 8, 5, 1, True, "hswish"))),
    # Whole small networks (stem, blocks, pooling, classifier head): what a network costs beyond
    # its layers (input and output layout changes, the head) only shows up here.
    *(MicroBench("net", c, 16, k, e) for c, k, e in (
        (8, 3, 3), (8, 5, 6), (12, 3, 6), (16, 5, 3), (16, 3, 6), (24, 5, 6))),
    *(MicroBench("net", c, 16, k, e, 1, se, act) for c, k, e, se, act in (
        (12, 5, 4, True, "hswish"), (16, 7, 3, False, "relu6"), (8, 3, 6, True, "relu6"),
        (16, 3, 4, True, "hswish"), (12, 7, 1, False, "hswish"), (8, 5, 3, True, "relu6"))),
    # Depthwise and pointwise layers on channel counts that leave a half or single channels
    # over a vector of 16 (kernel_costs' tail terms), as width multipliers of 0.75 make them.
    *(MicroBench("depthwise", c, s, k) for c, s, k in ((12, 8, 5), (20, 8, 3), (36, 8, 7),
                                                       (72, 4, 5), (18, 16, 3))),
    *(MicroBench("pointwise", c, s, 1) for c, s in ((12, 16), (20, 8), (40, 8), (72, 4))),
    # Whole networks sampled from the search space (calibrate.networks), each with its own
    # per-stage precisions: the kernels in the mixes the search asks about.
    *(MicroBench("space_net", 0, 16, seed=i) for i in range(100)),
)

# A few minutes less on a slow device, at some cost in fidelity (`profile calibrate --quick`).
QUICK_BENCHMARKS: tuple[MicroBench, ...] = (
    MicroBench("conv", 16, 16), MicroBench("pointwise", 32, 16, 1),
    MicroBench("pointwise", 192, 4, 1), MicroBench("depthwise", 48, 16, 3),
    MicroBench("depthwise", 96, 8, 5), MicroBench("matmul", 256, 256),
    MicroBench("elementwise", 16, 16), MicroBench("pooling", 128, 8),
    MicroBench("ir_block", 16, 16, 3, 6), MicroBench("ir_block", 24, 8, 5, 3, 2),
    MicroBench("ds_block", 16, 16, 5, 1, 2), MicroBench("pointwise", 36, 8, 1),
    MicroBench("depthwise", 36, 8, 5), MicroBench("net", 12, 16, 3, 6),
    *(MicroBench("space_net", 0, 16, seed=i) for i in range(12)),
)


def _chain(g: GraphBuilder, bench: MicroBench, x: str, length: int) -> str:
    c, k = bench.channels, bench.kernel
    for _ in range(length):
        if bench.op_class in ("conv", "pointwise"):
            x = g.conv(x, c, c, k)
        elif bench.op_class == "depthwise":
            x = g.conv(x, c, c, k, groups=c)
        elif bench.op_class == "matmul":
            x = g.op("Relu", [g.linear(x, c, c)])
        elif bench.op_class == "elementwise":
            x = g.op("Add", [x, x])
        elif bench.op_class == "ir_block":
            x = g.inverted_residual(x, c, c, bench.expansion, 1, k, bench.se, bench.act)
        elif bench.op_class == "ds_block":
            x = g.separable(x, c, c, 1, k, bench.se, bench.act)
    return x


def _network(g: GraphBuilder, bench: MicroBench) -> onnx.ModelProto:
    """A 4-stage MobileNet-like classifier on a 1-channel image (the default data's shape)."""
    c, k, e, size = bench.channels, bench.kernel, bench.expansion, bench.size
    se, act = bench.se, bench.act
    g.scope = FRONT  # the first half: mixed-precision variants quantize only this part
    x = g.conv("input", 1, c, 3, act=act)
    x = g.inverted_residual(x, c, c, e, 1, k, se, act)
    x = g.inverted_residual(x, c, c * 3 // 2, e, 2, k, se, act)
    g.scope = ""
    x = g.separable(x, c * 3 // 2, 2 * c, 2, k, se, act)
    x = g.inverted_residual(x, 2 * c, 4 * c, e, 1, k, se, act)
    x = g.conv(x, 4 * c, 8 * c, 1, act=act)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    return g.model([1, 1, size, size], g.linear(x, 8 * c, 10), [1, 10])


def build_micro_model(bench: MicroBench, length: int) -> onnx.ModelProto:
    if bench.op_class == "space_net":
        return space_network(bench.seed)[0]
    g = GraphBuilder(np.random.default_rng(zlib.crc32(bench.label.encode())))
    if bench.op_class == "net":
        return _network(g, bench)
    if bench.op_class == "matmul":
        return g.model([1, bench.channels], _chain(g, bench, "input", length),
                       [1, bench.channels])
    shape = [1, bench.channels, bench.size, bench.size]
    if bench.op_class in ("ir_block", "ds_block") and bench.stride == 2:
        # A strided block first (the stage's entry), then stride-1 repeats at half the size.
        c, half = bench.channels, (bench.size + 1) // 2
        if bench.op_class == "ir_block":
            x = g.inverted_residual("input", c, c, bench.expansion, 2, bench.kernel, bench.se,
                                    bench.act)
        else:
            x = g.separable("input", c, c, 2, bench.kernel, bench.se, bench.act)
        x = _chain(g, bench, x, length - 1)
        return g.model(shape, x, [1, c, half, half])
    if bench.op_class == "pooling":
        # One pooling layer per chain element, each on its own copy of the input.
        outs = [g.op("GlobalAveragePool", [g.op("Identity", ["input"])]) for _ in range(length)]
        x = outs[0] if length == 1 else g.op("Concat", outs, axis=1)
        return g.model(shape, x, [1, bench.channels * length, 1, 1])
    return g.model(shape, _chain(g, bench, "input", length), shape)


FRONT = "front/"  # node-name prefix of a network micro-benchmark's first half

# How each int8 variant is quantized: QuantPlan(default, prefixes, act_symmetric) arguments.
# The search samples all of these: uint8 or symmetric int8 activations, and int8 stages next to
# float ones, whose boundaries run real Quantize / Dequantize operators.
INT8_VARIANTS: dict[str, tuple[str, dict[str, str], bool]] = {
    "int8": ("int8", {}, False),
    "int8_symmetric": ("int8", {}, True),
    "int8_front": ("fp32", {FRONT: "int8"}, False),  # networks only: int8 first half
    "int8_back": ("int8", {FRONT: "fp32"}, True),  # networks only: int8 second half, symmetric
}
NETWORK_ONLY = frozenset({"int8_front", "int8_back"})


SAMPLED = "sampled"  # a space_net's own per-stage precisions
