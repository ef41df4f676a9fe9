"""A fixed reference network timed alongside every candidate, so host drift cancels out.

On a shared or thermally throttled machine the CPU's speed wanders by tens of percent from one
second to the next (measured here: the same file re-timed in fresh sessions spread by 29-95%).
Timing candidate and gauge in alternating runs and keeping only their ratio removes that common
factor: the same re-measurements then agree within a few percent (BENCHMARKS.md). A latency is
reported as ``ratio * gauge_ms``, where ``gauge_ms`` is the gauge's latency measured once per
study, so every trial of a study is on one scale.

The gauge is built with ``onnx.helper`` from seeded weights, not exported from torch: profiles
must not depend on training code, and the same bytes come out on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeshrink.hardware_profiles.onnx_builder import GraphBuilder

GAUGE_SEED = 0
GAUGE_OPSET = 17


@dataclass(frozen=True)
class Gauge:
    path: str  # the gauge ONNX file
    ms: float  # its latency on this host when the study calibrated it


def build_gauge_model(in_channels: int, resolution: int, num_classes: int = 10) -> onnx.ModelProto:
    """A small inverted-residual network of the size of a typical student (~0.1 ms here)."""
    g = GraphBuilder(np.random.default_rng(GAUGE_SEED))
    h = g.conv("input", in_channels, 16, 3)
    h = g.inverted_residual(h, 16, 16, 3, 1)
    h = g.inverted_residual(h, 16, 24, 6, 2)
    h = g.inverted_residual(h, 24, 32, 6, 2)
    h = g.conv(h, 32, 128, 1)
    pooled = g.op("GlobalAveragePool", [h])
    logits = g.linear(g.op("Flatten", [pooled]), 128, num_classes)
    return g.model(["batch", in_channels, resolution, resolution], logits, ["batch", num_classes],
                   GAUGE_OPSET)


def write_gauge_model(path: Path | str, in_channels: int, resolution: int) -> Path:
    """Write the gauge (same bytes every time) unless an identical file is already there."""
    path = Path(path)
    data = build_gauge_model(in_channels, resolution).SerializeToString()
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path
