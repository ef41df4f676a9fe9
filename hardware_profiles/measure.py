"""Real latency of an ONNX file on this host, as onnxruntime runs it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeshrink.hardware_profiles.registry import Measurement


@dataclass(frozen=True)
class LatencyResult:
    median_ms: float
    p90_ms: float
    runs: int
    threads: int


def make_session(model_path: Path | str, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def measure_latency(
    model_path: Path | str, sample: np.ndarray, settings: Measurement | None = None
) -> LatencyResult:
    """Warm up, then time single-sample runs until both a run count and a duration are reached."""
    s = settings or Measurement()
    session = make_session(model_path, s.intra_op_threads)
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(sample[:1], dtype=np.float32)}
    for _ in range(s.warmup_runs):
        session.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < s.min_runs or time.perf_counter() - start < s.min_seconds:
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    arr = np.asarray(times)
    return LatencyResult(
        median_ms=float(np.median(arr)),
        p90_ms=float(np.percentile(arr, 90)),
        runs=len(times),
        threads=s.intra_op_threads,
    )
