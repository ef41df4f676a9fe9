"""Fit a profile's roofline numbers to micro-benchmarks timed on the machine at hand.

Copy edgeshrink to the device, run ``edgeshrink profile calibrate --out my-device.toml`` once,
and search anywhere with ``--profile my-device.toml``. Only onnxruntime, onnx, numpy and the
pure-Python tomli-w are needed here: the micro-benchmarks are built with ``onnx.helper`` and
quantized with onnxruntime's tool.

Each micro-benchmark is a chain of one operator (conv, depthwise, pointwise, linear,
elementwise, pooling) at one size and precision, timed at chain lengths 1 and 4 so the per-layer
and per-inference overheads separate from the per-MAC cost. The roofline's ``max`` is fitted by
alternating: assign each layer to compute or memory under the current numbers, solve the
resulting linear model for non-negative coefficients (relative error, since small and large
networks matter alike), repeat until the assignment settles.

The same timings also fit a linear cost per runtime kernel (``kernel_costs``, nn-Meter's idea in
a readable table), which prices every kernel the micro-benchmarks ran; the roofline stays in the
profile for any other layer.

Modules: ``catalogue`` (what is timed), ``timing``, ``fit`` (roofline and kernel table),
``write`` (the TOML); :func:`calibrate` runs them in that order.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeshrink.core.atomic import atomic_write_text
from edgeshrink.hardware_profiles.calibrate.catalogue import (
    CHAIN_LENGTHS,
    FRONT,
    FUSION,
    INT8_VARIANTS,
    MICRO_BENCHMARKS,
    QUICK_BENCHMARKS,
    MicroBench,
    build_micro_model,
)
from edgeshrink.hardware_profiles.calibrate.fit import (
    Fit,
    KernelFit,
    fit_kernels,
    fit_roofline,
    nnls,
)
from edgeshrink.hardware_profiles.calibrate.timing import Sample, _int8, run_micro_benchmarks
from edgeshrink.hardware_profiles.calibrate.write import profile_toml
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.measure import prepare_gauge
from edgeshrink.hardware_profiles.registry import (
    Measurement,
    Profile,
    load_profile,
    parse_profile,
)

__all__ = [
    "CHAIN_LENGTHS", "FRONT", "FUSION", "INT8_VARIANTS", "MICRO_BENCHMARKS", "QUICK_BENCHMARKS",
    "Fit", "KernelFit", "MicroBench", "Sample", "_int8", "build_micro_model", "calibrate",
    "fit_kernels", "fit_roofline", "nnls", "profile_toml", "run_micro_benchmarks",
]


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
