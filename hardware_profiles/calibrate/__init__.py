"""Fit a profile's roofline numbers to micro-benchmarks timed on the machine at hand.

Run ``edgeshrink profile calibrate --out my-device.toml`` on the device once and search
anywhere with ``--profile my-device.toml``. Where edgeshrink is not installed on the device,
``edgeshrink profile bundle`` (``bundle``) writes a zipapp that needs only numpy and onnxruntime
there: the micro-benchmarks, which are built with ``onnx.helper`` and quantized with
onnxruntime's onnx-based tool, come in it prebuilt, and ``on_device`` runs this package's own
timing, fit and writer on them.

Each micro-benchmark is a chain of one operator (conv, depthwise, pointwise, linear,
elementwise, pooling) at one size and precision, timed at chain lengths 1 and 4 so the per-layer
and per-inference overheads separate from the per-MAC cost. The roofline's ``max`` is fitted by
alternating: assign each layer to compute or memory under the current numbers, solve the
resulting linear model for non-negative coefficients (relative error, since small and large
networks matter alike), repeat until the assignment settles.

The same timings also fit a linear cost per runtime kernel (``kernel_costs``, nn-Meter's idea in
a readable table), which prices every kernel the micro-benchmarks ran; the roofline stays in the
profile for any other layer.

``--runtime litert`` times the same micro-benchmarks as LiteRT files (XNNPACK, the kernels of
Android and Raspberry Pi OS) converted from torch twins of their ONNX graphs
(``evaluators.litert_micro``), reads each graph as LiteRT's converter runs it (the ``litert``
reading) and fits the same way. The converter comes with it: it needs the [tflite] extra and
torch on the machine it times, unlike the onnxruntime calibration and its bundle.

Modules: ``catalogue`` (what is timed), ``timing``, ``fit`` (roofline and kernel table),
``write`` (the TOML); :func:`calibrate` runs them in that order. ``bundle`` (the zipapp),
``on_device`` (its entry point) and ``onnx_standin`` (its ``onnx``) calibrate without edgeshrink.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeshrink.hardware_profiles.calibrate.catalogue import (
    CHAIN_LENGTHS,
    FRONT,
    FUSION,
    GAUGE_INPUT,
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
from edgeshrink.hardware_profiles.calibrate.timing import (
    Built,
    Sample,
    _int8,
    build_micro_models,
    run_micro_benchmarks,
    time_micro_models,
)
from edgeshrink.hardware_profiles.calibrate.write import check_out, fit_and_write, profile_toml
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.measure import prepare_gauge
from edgeshrink.hardware_profiles.registry import (
    Measurement,
    Profile,
    load_profile,
    parse_profile,
)
from edgeshrink.hardware_profiles.runtimes import RUNTIMES

__all__ = [
    "CHAIN_LENGTHS", "FRONT", "FUSION", "INT8_VARIANTS", "MICRO_BENCHMARKS", "QUICK_BENCHMARKS",
    "Built", "Fit", "KernelFit", "MicroBench", "Sample", "_int8", "build_micro_model",
    "build_micro_models", "calibrate", "check_out", "fit_and_write", "fit_kernels",
    "fit_roofline", "nnls", "profile_toml", "run_micro_benchmarks", "time_micro_models",
]


def calibrate(
    out: Path, name: str = "my-device", description: str | None = None, kind: str = "cpu",
    precisions: tuple[str, ...] = ("fp32", "int8"), settings: Measurement | None = None,
    gauge: Gauge | None = None, progress: Callable[[str], None] | None = None,
    benchmarks: tuple[MicroBench, ...] = MICRO_BENCHMARKS, repeats: int = 1,
    runtime: str = "onnxruntime",
    build: Callable[[Path, tuple[str, ...], tuple[MicroBench, ...]], list[Built]] | None = None,
) -> tuple[Profile, KernelFit]:
    """Run the micro-benchmarks here, fit, write ``out`` and return the loaded profile.

    ``runtime`` times them (``runtimes.RUNTIMES``); ``build`` makes the files it runs
    (default: the ONNX micro-models; LiteRT's come from ``evaluators.litert_micro``, which
    needs the converter and torch, so the caller passes it in). The fit is the same for both.
    """
    settings = replace(settings or Measurement(), runtime=runtime)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if gauge is None and settings.drift_correction == "gauge":
            host = load_profile("host")
            gauge = prepare_gauge(host, workdir, np.zeros(GAUGE_INPUT, np.float32))
        built = (build or build_micro_models)(workdir, precisions, benchmarks)
        samples = time_micro_models(built, gauge, settings, progress, repeats,
                                    RUNTIMES[runtime].reading)
    kernels = fit_and_write(
        samples, Path(out), name, description, kind, gauge.ms if gauge else None,
        # never publish a profile that does not load
        check=lambda text: parse_profile(tomllib.loads(text), str(out)), runtime=runtime)
    return load_profile(str(out)), kernels
