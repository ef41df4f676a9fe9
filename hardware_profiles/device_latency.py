"""A candidate's latency on the target device, by the profile's method: measured or predicted.

Both methods return the same record, so the search, the report and the dashboard never care
which one a profile uses; a new method is one more entry in :data:`LATENCY_METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.hardware_profiles.measure import measure_latency
from edgeshrink.hardware_profiles.registry import Profile


@dataclass(frozen=True)
class DeviceLatency:
    method: str  # "measured" (timed here) or "predicted" (latency model on the profile)
    median_ms: float
    p90_ms: float
    raw_median_ms: float
    gauge_ratio: float | None = None
    runs: int = 0
    threads: int = 0
    layer_ms: dict[str, float] | None = None
    energy_mj: float | None = None
    device_weight_bytes: int | None = None
    peak_activation_bytes: int | None = None
    memory_problems: tuple[str, ...] = field(default_factory=tuple)
    memory_overflow: float | None = None  # see Prediction.memory_overflow


def _measured(path: Path, sample: np.ndarray, profile: Profile,
              gauge: Gauge | None) -> DeviceLatency:
    r = measure_latency(path, sample, profile.measurement, gauge)
    return DeviceLatency("measured", r.median_ms, r.p90_ms, r.raw_median_ms, r.gauge_ratio,
                         r.runs, r.threads)


def _predicted(path: Path, sample: np.ndarray, profile: Profile,
               gauge: Gauge | None) -> DeviceLatency:
    p = predict_latency(path, profile)
    return DeviceLatency(
        "predicted", p.total_ms, p.total_ms, p.total_ms, layer_ms=p.layer_ms(),
        energy_mj=p.energy_mj, device_weight_bytes=p.weight_bytes,
        peak_activation_bytes=p.peak_activation_bytes, memory_problems=p.memory_problems,
        memory_overflow=p.memory_overflow,
    )


LATENCY_METHODS: dict[str, Callable[..., DeviceLatency]] = {
    "measured": _measured,
    "predicted": _predicted,
}


def device_latency(path: Path | str, sample: np.ndarray, profile: Profile,
                   gauge: Gauge | None = None, method: str | None = None) -> DeviceLatency:
    """``method`` overrides the profile's: a file whose precisions are only simulated on this
    host (fp16, int4 weights run by fp32 kernels) is predicted even on a measured profile."""
    return LATENCY_METHODS[method or profile.latency_method](Path(path), sample, profile, gauge)
