"""Real latency of a model file on this host, by the runtime the profile names, optionally
gauge-normalised."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeshrink.hardware_profiles.gauge import Gauge, write_gauge_model
from edgeshrink.hardware_profiles.profile_terms import Measurement
from edgeshrink.hardware_profiles.runtimes import RUNTIMES, make_session

if TYPE_CHECKING:  # not at run time: the registry needs pydantic, a device may lack it
    from edgeshrink.hardware_profiles.registry import Profile

__all__ = ["LatencyResult", "calibrate_gauge", "make_session", "measure_latency", "prepare_gauge"]


@dataclass(frozen=True)
class LatencyResult:
    median_ms: float
    p90_ms: float
    runs: int
    threads: int
    raw_median_ms: float  # as timed, before dividing out the host's drift
    gauge_ratio: float | None = None  # median of candidate time / adjacent gauge time


def measure_latency(
    model_path: Path | str,
    sample: np.ndarray,
    settings: Measurement | None = None,
    gauge: Gauge | None = None,
) -> LatencyResult:
    """Warm up, then time single-sample runs until both a run count and a duration are reached.

    With a gauge, each candidate run is followed by a gauge run and divided by it, so a change
    of the host's speed during or between measurements cancels out; the result is scaled back to
    milliseconds with the gauge's calibrated latency.
    """
    s = settings or Measurement()
    runners = [RUNTIMES[s.runtime].open(model_path, sample, s.intra_op_threads)]
    if gauge is not None:
        # The gauge is the ONNX network timed with onnxruntime whatever the candidate's runtime:
        # it stands for the machine's speed of the moment (clock, neighbours), which both
        # runtimes feel alike; one gauge keeps `host` and `host-litert` latencies on one scale
        # and needs no converter on the profile side. Its timing does not depend on the values.
        ref = make_session(gauge.path, s.intra_op_threads)
        dims = [d if isinstance(d, int) else 1 for d in ref.get_inputs()[0].shape]
        feed = {ref.get_inputs()[0].name: np.random.default_rng(0).normal(size=dims)
                .astype(np.float32)}
        runners.append(lambda: ref.run(None, feed))
    for _ in range(s.warmup_runs):
        for run in runners:
            run()
    times: list[list[int]] = [[] for _ in runners]
    clock = time.perf_counter_ns
    start = time.perf_counter()
    while len(times[0]) < s.min_runs or time.perf_counter() - start < s.min_seconds:
        for run, out in zip(runners, times, strict=True):
            t0 = clock()
            run()
            out.append(clock() - t0)
    own = np.asarray(times[0], dtype=float) / 1e6
    raw = float(np.median(own))
    if gauge is None:
        return LatencyResult(raw, float(np.percentile(own, 90)), len(own), s.intra_op_threads, raw)
    ratios = own / (np.asarray(times[1], dtype=float) / 1e6)
    ratio = float(np.median(ratios))
    return LatencyResult(
        median_ms=ratio * gauge.ms,
        p90_ms=float(np.percentile(ratios, 90)) * gauge.ms,
        runs=len(own),
        threads=s.intra_op_threads,
        raw_median_ms=raw,
        gauge_ratio=ratio,
    )


def calibrate_gauge(
    gauge_path: Path | str, sample: np.ndarray, settings: Measurement | None = None,
    sessions: int = 5,
) -> Gauge:
    """The gauge's own latency: median over a few fresh sessions, taken once per study, always
    with onnxruntime (see measure_latency)."""
    s = replace(settings or Measurement(), runtime="onnxruntime")
    medians = [measure_latency(gauge_path, sample, s).median_ms for _ in range(sessions)]
    return Gauge(path=str(gauge_path), ms=float(np.median(medians)))


def prepare_gauge(
    profile: Profile, directory: Path, sample: np.ndarray, known_ms: float | None = None
) -> Gauge | None:
    """The gauge a profile asks for, written into ``directory``; calibrated unless ``known_ms``."""
    if profile.latency_method != "measured" or profile.measurement.drift_correction != "gauge":
        return None
    _, channels, resolution, _ = sample.shape
    path = write_gauge_model(directory / "gauge.onnx", channels, resolution)
    if known_ms is not None:
        return Gauge(str(path), float(known_ms))
    return calibrate_gauge(path, sample, profile.measurement)
