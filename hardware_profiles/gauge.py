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
from onnx import TensorProto, helper, numpy_helper

GAUGE_SEED = 0
GAUGE_OPSET = 17


@dataclass(frozen=True)
class Gauge:
    path: str  # the gauge ONNX file
    ms: float  # its latency on this host when the study calibrated it


class _GraphBuilder:
    """Just enough of a builder for a MobileNet-like stack of convolutions."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.n = rng, [], [], 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def _tensor(self, array: np.ndarray) -> str:
        name = self._name("w")
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> str:
        fan_in = cin // groups * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // groups, k, k))
        b = self.rng.normal(0, 0.01, cout)
        out = self._name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self._tensor(w), self._tensor(b)], [out], kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        if not relu:
            return out
        act = self._name("relu")
        self.nodes.append(helper.make_node("Relu", [out], [act]))
        return act

    def inverted_residual(self, x: str, cin: int, cout: int, expansion: int, stride: int) -> str:
        mid = cin * expansion
        h = self.conv(x, cin, mid, 1)
        h = self.conv(h, mid, mid, 3, stride, groups=mid)
        h = self.conv(h, mid, cout, 1, relu=False)
        if stride == 1 and cin == cout:
            out = self._name("add")
            self.nodes.append(helper.make_node("Add", [x, h], [out]))
            return out
        return h


def build_gauge_model(in_channels: int, resolution: int, num_classes: int = 10) -> onnx.ModelProto:
    """A small inverted-residual network of the size of a typical student (~0.1 ms here)."""
    g = _GraphBuilder(np.random.default_rng(GAUGE_SEED))
    h = g.conv("input", in_channels, 16, 3)
    h = g.inverted_residual(h, 16, 16, 3, 1)
    h = g.inverted_residual(h, 16, 24, 6, 2)
    h = g.inverted_residual(h, 24, 32, 6, 2)
    h = g.conv(h, 32, 128, 1)
    pooled, flat = g._name("pool"), g._name("flat")
    g.nodes += [helper.make_node("GlobalAveragePool", [h], [pooled]),
                helper.make_node("Flatten", [pooled], [flat])]
    w = g.rng.normal(0, np.sqrt(1.0 / 128), (num_classes, 128))
    g.nodes.append(helper.make_node("Gemm", [flat, g._tensor(w),
                                             g._tensor(np.zeros(num_classes))], ["logits"],
                                    transB=1))
    graph = helper.make_graph(
        g.nodes, "edgeshrink_gauge",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       ["batch", in_channels, resolution, resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", GAUGE_OPSET)],
                              producer_name="edgeshrink-gauge")
    onnx.checker.check_model(model)
    return model


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
