"""Quantize and time the micro-benchmarks here, round-robin against the drift gauge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeshrink.hardware_profiles.calibrate.catalogue import (
    CHAIN_LENGTHS,
    FUSION,
    INT8_VARIANTS,
    MICRO_BENCHMARKS,
    NETWORK_ONLY,
    SAMPLED,
    MicroBench,
    build_micro_model,
)
from edgeshrink.hardware_profiles.calibrate.networks import space_network
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.graph_layers import Layer, analyse_graph
from edgeshrink.hardware_profiles.measure import measure_latency
from edgeshrink.hardware_profiles.profile_terms import Measurement


def _int8(model_path: Path, out: Path, shape: list[int], variant: str = "int8",
          plan: tuple[str, dict[str, str], bool] | None = None) -> None:
    # Reuses the search's own quantizer, so calibration times what the search exports.
    from edgeshrink.spaces.quantization.onnx_qdq import quantize_with_plan
    from edgeshrink.spaces.quantization.plan import QuantPlan

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


@dataclass(frozen=True)
class Built:
    """One model file to time: a micro-benchmark at one chain length and precision. Built here
    (:func:`build_micro_models`) or shipped prebuilt to a device by ``calibrate.bundle``."""

    label: str
    length: int
    precision: str
    path: Path
    shape: tuple[int, ...]  # the input's
    graph: Path | None = None  # the ONNX its layers are read from, where ``path`` is not ONNX


def run_micro_benchmarks(
    workdir: Path, gauge: Gauge | None, settings: Measurement, precisions: tuple[str, ...],
    progress: Callable[[str], None] | None = None,
    benchmarks: tuple[MicroBench, ...] = MICRO_BENCHMARKS,
    repeats: int = 1,
) -> list[Sample]:
    """Build every micro-model into ``workdir``, then time them (:func:`time_micro_models`)."""
    return time_micro_models(build_micro_models(workdir, precisions, benchmarks), gauge,
                             settings, progress, repeats)


def build_micro_models(workdir: Path, precisions: tuple[str, ...],
                       benchmarks: tuple[MicroBench, ...] = MICRO_BENCHMARKS) -> list[Built]:
    """Every micro-model as ONNX files in ``workdir``, in timing order."""
    built: list[Built] = []
    for bench in benchmarks:
        if bench.op_class == "space_net":
            built.append(_space_net(bench, workdir, "int8" in precisions))
            continue
        for length in (1,) if bench.op_class == "net" else CHAIN_LENGTHS:
            model = build_micro_model(bench, length)
            fp32 = workdir / f"{bench.label}_x{length}.onnx"
            onnx.save(model, fp32)
            dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
            variants = [p for p in precisions if p != "int8"]
            if "int8" in precisions:
                variants += [v for v in INT8_VARIANTS
                             if bench.op_class == "net" or v not in NETWORK_ONLY]
            for variant in variants:
                path = fp32
                if variant in INT8_VARIANTS:
                    path = workdir / f"{bench.label}_x{length}_{variant}.onnx"
                    _int8(fp32, path, dims, variant)
                built.append(Built(bench.label, length, variant, path, tuple(dims)))
    return built


def time_micro_models(
    built: list[Built], gauge: Gauge | None, settings: Measurement,
    progress: Callable[[str], None] | None = None, repeats: int = 1, fusion: str = FUSION,
) -> list[Sample]:
    """Time every model ``repeats`` times round-robin and keep each one's median: a slow spell
    of the machine then hits one repeat of many models, not all repeats of one. Needs
    onnxruntime and numpy only (the graph is read as onnxruntime lays it out here, or as the
    ``fusion`` reading of the runtime that ``settings`` time with)."""
    times: list[list[float]] = [[] for _ in built]
    for r in range(repeats):
        for i, b in enumerate(built):
            x = np.random.default_rng(1).normal(size=b.shape).astype(np.float32)
            times[i].append(measure_latency(b.path, x, settings, gauge).median_ms)
            if progress:
                progress(f"[{r + 1}/{repeats}] {b.label} x{b.length} {b.precision}: "
                         f"{times[i][-1]:.4f} ms")
    return [Sample(b.label, b.precision, b.length,
                   [la for la in analyse_graph(b.graph or b.path, fusion) if la.macs > 0],
                   float(np.median(ts)))
            for b, ts in zip(built, times, strict=True)]


def _space_net(bench: MicroBench, workdir: Path, int8: bool) -> Built:
    """A sampled network, quantized by its own plan (all float where int8 is not timed)."""
    model, default, prefixes, symmetric = space_network(bench.seed)
    path = workdir / f"{bench.label}.onnx"
    onnx.save(model, path)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if not int8 or "int8" not in {default, *prefixes.values()}:
        return Built(bench.label, 1, "fp32", path, tuple(shape))
    quantized = workdir / f"{bench.label}_{SAMPLED}.onnx"
    _int8(path, quantized, shape, plan=(default, prefixes, symmetric))
    return Built(bench.label, 1, SAMPLED, quantized, tuple(shape))
