"""Parameter count and MACs read from an ONNX graph, so the numbers describe the exported file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeshrink.hardware_profiles.graph_layers import tensor_shapes


@dataclass(frozen=True)
class GraphStats:
    params: int
    nonzero_params: int
    macs: int


def graph_stats(model_path: Path | str) -> GraphStats:
    """Count MACs of Conv and Gemm/MatMul nodes at batch 1, and parameters of weight tensors.

    Meant for the fp32 export: in a QDQ graph the weights are int8 initializers feeding
    DequantizeLinear, which this still counts once each.
    """
    model = onnx.load(str(model_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    shapes = tensor_shapes(model)
    weight_names: set[str] = set()
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = inits.get(node.input[1])
            out_shape = shapes.get(node.output[0])
            if w is None or out_shape is None:
                continue
            # Each output element needs (C_in / groups) * kH * kW multiply-accumulates.
            macs += int(np.prod(out_shape[1:])) * int(np.prod(w.shape[1:]))
            weight_names.update(node.input[1:])
        elif node.op_type in ("Gemm", "MatMul"):
            w = inits.get(node.input[1])
            if w is None:
                continue
            macs += int(w.size)
            weight_names.update(node.input[1:])
    weights = [inits[n] for n in weight_names if n in inits]
    return GraphStats(
        params=int(sum(w.size for w in weights)),
        nonzero_params=int(sum(np.count_nonzero(w) for w in weights)),
        macs=macs,
    )
