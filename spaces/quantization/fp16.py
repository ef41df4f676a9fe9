"""fp16 layers, simulated exactly in values on a host whose runtime has no fp16 kernels.

onnxruntime's CPU provider has no fp16 Conv kernel, so a true fp16 graph would not run here. The
file instead holds what an fp16 device holds and computes with what it would see:

- weights and biases of fp16 layers are stored as fp16 initializers, each cast to float before
  use (the weight bytes are those of fp16);
- every activation an fp16 layer reads or writes is rounded to fp16 (Cast to fp16 and back), so
  accuracy is that of fp16 storage between layers. Accumulation inside a layer stays fp32, as on
  devices that accumulate fp16 products in fp32.

The latency model reads such layers as fp16 (``hardware_profiles.graph_layers``) and the Casts as
free; host timing of this file is not fp16 timing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeshrink.spaces.quantization.graph import WEIGHTED_OPS, drop_unused_initializers

# Nodes that are not layers of their own: they keep the precision of what they carry.
HELPER_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast", "Constant", "Identity"})


def _round_trip(src: str, dst: str, name: str) -> list[onnx.NodeProto]:
    half = f"{dst}.fp16"
    return [helper.make_node("Cast", [src], [half], name=f"{name}_ToFp16", to=TensorProto.FLOAT16),
            helper.make_node("Cast", [half], [dst], name=f"{name}_ToFp32", to=TensorProto.FLOAT)]


def simulate_fp16(model: onnx.ModelProto, is_fp16: Callable[[str], bool]) -> int:
    """Rewrite, in place, the nodes whose name ``is_fp16`` as fp16 layers; returns how many."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    layers = {i for i, n in enumerate(graph.node) if n.op_type not in HELPER_OPS
              and is_fp16(n.name)}
    made_by_fp16 = {out for i in layers for out in graph.node[i].output}
    constants = {out for n in graph.node if n.op_type == "Constant" for out in n.output}
    before: dict[int, list[onnx.NodeProto]] = {}
    after: dict[int, list[onnx.NodeProto]] = {}
    rounded: dict[str, str] = {}  # float tensor from outside -> its fp16-rounded copy
    for i in sorted(layers):
        node = graph.node[i]
        pre = before.setdefault(i, [])
        for k, name in enumerate(node.input):
            if not name or name in made_by_fp16 or name in constants:
                continue  # absent, already rounded by the fp16 layer that made it, or a bound
            if name in inits:
                t = inits[name]
                if node.op_type in WEIGHTED_OPS and k >= 1 and t.data_type == TensorProto.FLOAT:
                    half = numpy_helper.from_array(
                        numpy_helper.to_array(t).astype(np.float16), f"{name}.fp16")
                    graph.initializer.append(half)
                    cast_out = f"{name}.as_float"
                    pre.append(helper.make_node("Cast", [half.name], [cast_out],
                                                name=f"{node.name}_w{k}_Cast",
                                                to=TensorProto.FLOAT))
                    node.input[k] = cast_out
                continue
            if name not in rounded:
                rounded[name] = f"{name}.rounded_fp16"
                pre.extend(_round_trip(name, rounded[name], f"{node.name}_in{k}"))
            node.input[k] = rounded[name]
        for k, out in enumerate(node.output):
            raw = f"{out}.unrounded"
            node.output[k] = raw
            after.setdefault(i, []).extend(_round_trip(raw, out, f"{node.name}_out{k}"))
    nodes = [m for i, n in enumerate(graph.node)
             for m in (*before.get(i, []), n, *after.get(i, []))]
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused_initializers(model)
    return len(layers)
