"""Fit a profile's roofline numbers to micro-benchmarks timed on the machine at hand.

Copy edgeshrink to the device, run ``edgeshrink profile calibrate --out my-device.toml`` once,
and search anywhere with ``--profile my-device.toml``. Only onnxruntime and numpy are needed
here: the micro-benchmarks are built with ``onnx.helper`` and quantized with onnxruntime's tool.

Each micro-benchmark is a chain of one operator (conv, depthwise, pointwise, linear,
elementwise, pooling) at one size and precision, timed at chain lengths 1 and 4 so the per-layer
and per-inference overheads separate from the per-MAC cost. The roofline's ``max`` is fitted by
alternating: assign each layer to compute or memory under the current numbers, solve the
resulting linear model for non-negative coefficients (relative error, since small and large
networks matter alike), repeat until the assignment settles.

The same timings also fit a linear cost per runtime kernel (``kernel_costs``, nn-Meter's idea in
a readable table), which prices every kernel the micro-benchmarks ran; the roofline stays in the
profile for any other layer.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import tempfile
import tomllib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from edgeshrink.core.atomic import atomic_write_text
from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.hardware_profiles.calibration_nets import space_network
from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.graph_layers import Layer, analyse_graph
from edgeshrink.hardware_profiles.kernel_costs import kernel_key, kernel_ms, kernel_units
from edgeshrink.hardware_profiles.measure import measure_latency, prepare_gauge
from edgeshrink.hardware_profiles.onnx_builder import GraphBuilder
from edgeshrink.hardware_profiles.registry import (
    KERNEL_TERMS,
    OP_CLASSES,
    PATH_FALLBACK,
    Measurement,
    Profile,
    load_profile,
    parse_profile,
)

CHAIN_LENGTHS = (1, 4)
# The micro-benchmarks are timed with onnxruntime on this machine: read the graph it runs here.
FUSION = "onnxruntime_layout"
KERNEL_VECTOR = 16  # channels per vector step of the kernels (AVX-512: 16 floats, 16 x 4 int8)
MAX_GMACS = 1e5  # above any edge device; caps a rate the fit left unbounded
MAX_BANDWIDTH_GBPS = 1e3


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
    seed: int = 0  # space_net: which sampled network (calibration_nets)

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
    # Whole networks sampled from the search space (calibration_nets), each with its own
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


def _int8(model_path: Path, out: Path, shape: list[int], variant: str = "int8",
          plan: tuple[str, dict[str, str], bool] | None = None) -> None:
    # Reuses the search's own quantizer, so calibration times what the search exports.
    from edgeshrink.spaces.precision_plan import QuantPlan
    from edgeshrink.spaces.quantization import quantize_with_plan

    default, prefixes, symmetric = plan or INT8_VARIANTS[variant]
    rng = np.random.default_rng(0)
    quantize_with_plan(model_path, out, rng.normal(size=(16, *shape[1:])).astype(np.float32),
                       QuantPlan(default, prefixes, act_symmetric=symmetric))


@dataclass(frozen=True)
class Sample:
    label: str
    precision: str  # "fp32", an INT8_VARIANTS name or SAMPLED
    length: int
    layers: list[Layer]
    ms: float


def run_micro_benchmarks(
    workdir: Path, gauge: Gauge | None, settings: Measurement, precisions: tuple[str, ...],
    progress: Callable[[str], None] | None = None,
    benchmarks: tuple[MicroBench, ...] = MICRO_BENCHMARKS,
    repeats: int = 1,
) -> list[Sample]:
    """Build every micro-model, then time them all ``repeats`` times round-robin and keep each
    one's median: a slow spell of the machine then hits one repeat of many models, not all
    repeats of one."""
    built: list[tuple[MicroBench, int, str, Path, np.ndarray]] = []
    for bench in benchmarks:
        if bench.op_class == "space_net":
            built.append(_space_net(bench, workdir, "int8" in precisions))
            continue
        for length in (1,) if bench.op_class == "net" else CHAIN_LENGTHS:
            model = build_micro_model(bench, length)
            fp32 = workdir / f"{bench.label}_x{length}.onnx"
            onnx.save(model, fp32)
            dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
            x = np.random.default_rng(1).normal(size=dims).astype(np.float32)
            variants = [p for p in precisions if p != "int8"]
            if "int8" in precisions:
                variants += [v for v in INT8_VARIANTS
                             if bench.op_class == "net" or v not in NETWORK_ONLY]
            for variant in variants:
                path = fp32
                if variant in INT8_VARIANTS:
                    path = workdir / f"{bench.label}_x{length}_{variant}.onnx"
                    _int8(fp32, path, dims, variant)
                built.append((bench, length, variant, path, x))
    times: list[list[float]] = [[] for _ in built]
    for r in range(repeats):
        for i, (bench, length, precision, path, x) in enumerate(built):
            times[i].append(measure_latency(path, x, settings, gauge).median_ms)
            if progress:
                progress(f"[{r + 1}/{repeats}] {bench.label} x{length} {precision}: "
                         f"{times[i][-1]:.4f} ms")
    return [Sample(bench.label, precision, length,
                   [la for la in analyse_graph(path, FUSION) if la.macs > 0], float(np.median(ts)))
            for (bench, length, precision, path, _), ts in zip(built, times, strict=True)]


def _space_net(bench: MicroBench, workdir: Path, int8: bool,
               ) -> tuple[MicroBench, int, str, Path, np.ndarray]:
    """A sampled network, quantized by its own plan (all float where int8 is not timed)."""
    model, default, prefixes, symmetric = space_network(bench.seed)
    path = workdir / f"{bench.label}.onnx"
    onnx.save(model, path)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    if not int8 or "int8" not in {default, *prefixes.values()}:
        return bench, 1, "fp32", path, x
    quantized = workdir / f"{bench.label}_{SAMPLED}.onnx"
    _int8(path, quantized, shape, plan=(default, prefixes, symmetric))
    return bench, 1, SAMPLED, quantized, x


def nnls(a: np.ndarray, b: np.ndarray, iterations: int = 500) -> np.ndarray:
    """Non-negative least squares (Lawson-Hanson). Own code: the device may lack scipy."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    for _ in range(iterations):
        w = a.T @ (b - a @ x)
        if passive.all() or w[~passive].max(initial=-np.inf) <= 1e-12:
            break
        passive[np.argmax(np.where(passive, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x


@dataclass(frozen=True)
class Fit:
    per_inference_us: float
    per_layer_us: dict[str, float]  # by precision: int8 layers also requantize
    gmacs: dict[tuple[str, str, str], float]  # GMAC/s by (op class, precision, kernel path)
    bandwidth_gbps: float
    mape: float  # on the micro-benchmarks themselves
    channel_block: dict[str, int] = field(default_factory=dict)  # by precision

    def rate(self, la: Layer) -> float:
        """The layer's path, else the next faster one it falls back to (as a profile does)."""
        path = la.path(self.channel_block.get(la.precision, 1))
        return next(self.gmacs[k] for q in PATH_FALLBACK[path]
                    if self.gmacs.get(k := (la.op_class, la.precision, q)))

    def predict_ms(self, layers: list[Layer]) -> float:
        """The fitted roofline itself; the written profile must predict the same."""
        return (self.per_inference_us + sum(
            self.per_layer_us[la.precision] + 1e-3 * max(
                la.blocked_macs(self.channel_block.get(la.precision, 1)) / self.rate(la),
                la.bytes_moved() / self.bandwidth_gbps) for la in layers)) / 1e3


def _key(la: Layer, blocks: dict[str, int]) -> tuple[str, str, str]:
    return la.op_class, la.precision, la.path(blocks.get(la.precision, 1))


PATH_NOTES = {"unaligned": "input channels off the channel block",
              "generic": "weights dequantized at run time: no pre-packed kernel"}


BLOCK_CHOICES = (1, 4, 8, 16)  # channel blocks of common kernels: none, NEON, AVX2, AVX-512


def fit_roofline(samples: list[Sample], rounds: int = 20,
                 block_choices: tuple[int, ...] = BLOCK_CHOICES) -> Fit:
    """The best fit over the channel block of each precision's kernels (a small grid)."""
    precs = sorted({la.precision for s in samples for la in s.layers})
    best: Fit | None = None
    for combo in itertools.product(block_choices, repeat=len(precs)):
        fit = _fit(samples, dict(zip(precs, combo, strict=True)), rounds)
        if best is None or fit.mape < best.mape - 1e-9:
            best = fit
    assert best is not None
    return best


def _fit(samples: list[Sample], blocks: dict[str, int], rounds: int) -> Fit:
    keys = sorted({_key(la, blocks) for s in samples for la in s.layers}
                  | {(la.op_class, la.precision, "aligned") for s in samples for la in s.layers})
    precs = sorted({la.precision for s in samples for la in s.layers})
    layer_col = {p: 1 + i for i, p in enumerate(precs)}
    first = 1 + len(precs)
    col = {k: first + i for i, k in enumerate(keys)}
    bw_col = first + len(keys)
    b = np.array([s.ms for s in samples])
    memory_bound: dict[tuple[int, int], bool] = {}
    coef = None
    for _ in range(rounds):
        a = np.zeros((len(samples), bw_col + 1))
        for i, s in enumerate(samples):
            a[i, 0] = 1.0
            for j, la in enumerate(s.layers):
                a[i, layer_col[la.precision]] += 1
                if memory_bound.get((i, j), False):
                    a[i, bw_col] += la.bytes_moved()
                else:
                    a[i, col[_key(la, blocks)]] += la.blocked_macs(blocks[la.precision])
        scale = a.max(axis=0)
        scale[scale == 0] = 1.0
        weights = 1.0 / b  # relative error
        coef = nnls((a / scale) * weights[:, None], b * weights) / scale
        changed = False
        for i, s in enumerate(samples):
            for j, la in enumerate(s.layers):
                compute = la.blocked_macs(blocks[la.precision]) * coef[col[_key(la, blocks)]]
                bound = la.bytes_moved() * coef[bw_col] > compute
                changed |= memory_bound.get((i, j), False) != bound
                memory_bound[(i, j)] = bound
        if not changed:
            break
    # A cost fitted to zero means the data never saw that class (or memory) bind. Such a class
    # gets the best rate measured at its precision, and an unbounded bandwidth a high finite
    # one, so the written profile stays readable and predicts exactly what Fit.predict_ms does.
    gmacs = {k: 1.0 / coef[col[k]] / 1e6 for k in keys if coef[col[k]] > 0}
    for p in precs:
        best = max((v for (_, q, _), v in gmacs.items() if q == p), default=MAX_GMACS)
        gmacs.update({k: best for k in keys if k[1] == p and k not in gmacs})
    fit = Fit(
        per_inference_us=float(coef[0] * 1e3),
        per_layer_us={p: float(coef[layer_col[p]] * 1e3) for p in precs},
        gmacs={k: float(min(v, MAX_GMACS)) for k, v in gmacs.items()},
        bandwidth_gbps=float(min(MAX_BANDWIDTH_GBPS, 1.0 / max(coef[bw_col], 1e-300) / 1e6)),
        mape=0.0,
        channel_block=blocks,
    )
    pred = np.array([fit.predict_ms(s.layers) for s in samples])
    return replace(fit, mape=float(np.mean(np.abs(pred - b) / b)))


@dataclass(frozen=True)
class KernelFit:
    per_inference_us: float
    kernels: dict[str, dict[str, float]]  # "<kernel> <class> <precision>" -> term -> cost
    vector: int
    mape: float  # on the micro-benchmarks themselves

    def predict_ms(self, layers: list[Layer]) -> float:
        """What the written profile predicts for layers of kernels it saw."""
        return self.per_inference_us / 1e3 + sum(
            kernel_ms(la, self.kernels[kernel_key(la)], self.vector) for la in layers)


def fit_kernels(samples: list[Sample], vector: int = KERNEL_VECTOR) -> KernelFit:
    """Non-negative least squares on relative error over every (kernel, term) the samples use.
    A term fitted to zero is written as zero (measured as free), not left out."""
    cols: dict[tuple[str, str], int] = {("", "inference"): 0}
    rows = []
    for s in samples:
        row = {("", "inference"): 1.0}
        for la in s.layers:
            for term, n in kernel_units(la, vector).items():
                row[(kernel_key(la), term)] = row.get((kernel_key(la), term), 0.0) + n
        rows.append(row)
        for k in row:
            cols.setdefault(k, len(cols))
    a = np.zeros((len(samples), len(cols)))
    for i, row in enumerate(rows):
        for k, n in row.items():
            a[i, cols[k]] = n
    b = np.array([s.ms for s in samples])
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    coef = nnls((a / scale) / b[:, None], np.ones_like(b)) / scale  # ms per unit
    kernels: dict[str, dict[str, float]] = {}
    for (key, term), j in cols.items():
        if key:  # layer_us in microseconds, the rest in nanoseconds per unit
            kernels.setdefault(key, {})[term] = float(coef[j] * (1e3 if term == "layer_us"
                                                                 else 1e6))
    order = {term: i for i, term in enumerate(KERNEL_TERMS)}  # the schema's order, to read
    kernels = {key: dict(sorted(terms.items(), key=lambda kv: order[kv[0]]))
               for key, terms in kernels.items()}
    fit = KernelFit(float(coef[0] * 1e3), kernels, vector, 0.0)
    pred = np.array([fit.predict_ms(s.layers) for s in samples])
    return replace(fit, mape=float(np.mean(np.abs(pred - b) / b)))


def _cpu_lines(cpu: CpuInfo) -> list[str]:
    return [f"cpu = {json.dumps(cpu.model)}", f"arch = {json.dumps(cpu.arch)}",
            f"int8_features = {json.dumps(list(cpu.int8_features))}"]


def profile_toml(fit: Fit, name: str, description: str, kind: str, samples: int,
                 gauge_ms: float | None, kernels: KernelFit | None = None) -> str:
    """The fitted numbers as a schema-2 profile: peak = best class, efficiency = share of it."""
    precisions = sorted({p for _, p, _ in fit.gmacs}, key=PRECISIONS.index)
    peak = {p: max(v for (c, q, _), v in fit.gmacs.items() if q == p) for p in precisions}
    base = "fp32" if "fp32" in peak else precisions[0]

    def share(c: str, p: str, path: str = "aligned") -> float | None:
        v = fit.gmacs.get((c, p, path))
        return None if v is None else min(1.0, v / peak[p])

    def chained(c: str, p: str, path: str) -> float | None:
        return next((v for q in PATH_FALLBACK[path] if (v := share(c, p, q)) is not None), None)

    lines = [
        f"# Calibrated by `edgeshrink profile calibrate` on {dt.date.today().isoformat()}: "
        f"{samples} micro-benchmark timings,",
        f"# fitted with {fit.mape:.1%} mean absolute error on the micro-benchmarks themselves.",
        "schema_version = 2",
        f'name = "{name}"',
        f'description = "{description}"',
        f'kind = "{kind}"',
        'latency_method = "predicted"',
        "sources = [",
        '  "[1] fitted to onnxruntime micro-benchmarks timed on the device (conv, depthwise, '
        'pointwise, linear, elementwise, pooling in chains of 1 and 4 layers; blocks; small '
        'networks and networks sampled from the search space)"'
        + (f',\n  "[2] timings drift-corrected against the edgeshrink gauge ({gauge_ms:.4f} ms)"'
           if gauge_ms else ""),
        "]",
        "",
        "[compute]",
        *(f"{p} = {peak[p]:.6g}" for p in precisions),
        "",
        "[memory]",
        f"bandwidth_gbps = {fit.bandwidth_gbps:.6g}",
        "",
        "[overhead]",
        f"per_layer_us = {fit.per_layer_us.get(base, 0.0):.6g}",
        f"per_inference_us = "
        f"{(kernels.per_inference_us if kernels else fit.per_inference_us):.6g}",
        *(f"per_layer_us_{p} = {v:.6g}" for p, v in fit.per_layer_us.items() if p != base),
        "",
        "[efficiency]",
    ]
    fallback = {c: share(c, base) for c in OP_CLASSES}
    known = [v for v in fallback.values() if v is not None]
    default = min(known) if known else 0.1
    lines += [f"{c} = {(fallback[c] or default):.6g}" for c in OP_CLASSES]
    base_paths = {path: {c: v for c in OP_CLASSES if (v := share(c, base, path)) is not None}
                  for path in ("unaligned", "generic")}
    for path, shares in base_paths.items():
        if shares:
            lines += ["", f"[efficiency.{path}]  # {PATH_NOTES[path]}",
                      *(f"{c} = {v:.6g}" for c, v in shares.items())]
    for p in precisions:
        if p == base:
            continue
        overrides = {c: share(c, p) for c in OP_CLASSES if share(c, p) is not None}
        if overrides:
            lines += ["", f"[efficiency.{p}]", *(f"{c} = {v:.6g}" for c, v in overrides.items())]
        for path, shares in base_paths.items():
            # Every class the base table lists for this path needs this precision's own value
            # (down its fallback chain where it has no data), or the base value would leak.
            own = {c: v for c in OP_CLASSES
                   if (v := share(c, p, path) if c not in shares else chained(c, p, path))
                   is not None}
            if own:
                lines += ["", f"[efficiency.{p}.{path}]",
                          *(f"{c} = {v:.6g}" for c, v in own.items())]
    lines += ["", "[layout]  # channel block of the kernels, fitted; the runtime that was timed",
              *(f"channel_block_{p} = {b}" for p, b in fit.channel_block.items()),
              f'fusion = "{FUSION}"']
    lines += ["", "[sparsity]", 'support = "none"']
    lines += ["", "[calibrated_on]  # the CPU these timings come from (hardware_profiles.cpu)",
              *_cpu_lines(host_cpu())]
    if kernels:
        lines += ["", f"[kernels]  # cost per runtime kernel, fitted with {kernels.mape:.1%} "
                  "mean absolute error; layer_us in us, the rest in ns per MAC / pixel / channel "
                  "/ weight",
                  f"channel_vector = {kernels.vector}"]
        lines += [f'"{key}" = {{ ' + ", ".join(f"{t} = {v:.6g}" for t, v in terms.items()) + " }"
                  for key, terms in sorted(kernels.kernels.items())]
    return "\n".join(lines) + "\n"


def calibrate(
    out: Path, name: str = "my-device", description: str | None = None, kind: str = "cpu",
    precisions: tuple[str, ...] = ("fp32", "int8"), settings: Measurement | None = None,
    gauge: Gauge | None = None, progress: Callable[[str], None] | None = None,
    benchmarks: tuple[MicroBench, ...] = MICRO_BENCHMARKS, repeats: int = 1,
) -> tuple[Profile, KernelFit]:
    """Run the micro-benchmarks here, fit, write ``out`` and return the loaded profile."""
    settings = settings or Measurement()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if gauge is None and settings.drift_correction == "gauge":
            host = load_profile("host")
            gauge = prepare_gauge(host, workdir, np.zeros((1, 1, 16, 16), np.float32))
        samples = run_micro_benchmarks(workdir, gauge, settings, precisions, progress,
                                       benchmarks, repeats)
    kernels = fit_kernels(samples)
    text = profile_toml(fit_roofline(samples), name,
                        description or f"{name}: calibrated with onnxruntime", kind,
                        len(samples), gauge.ms if gauge else None, kernels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parse_profile(tomllib.loads(text), str(out))  # never publish a profile that does not load
    atomic_write_text(out, text)
    return load_profile(str(out)), kernels
