"""ONNX graph housekeeping around quantization, so every node keeps the scope of its module.

A quantization plan picks nodes by name prefix (``/blocks/blocks.3/``). onnxruntime's
pre-processing leaves some nodes unnamed (HardSwish split into HardSigmoid and Mul), names weight
nodes after shared, scope-less initializers (``onnx::Conv_83``) and names the QuantizeLinear that
feeds an int8 block after the tensor's producer in the block before. These passes name all of
them under the module they serve.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_INPUT_ROLES = {1: "weight", 2: "bias"}


def scope_of(node_name: str) -> str:
    """``/blocks/blocks.0/Add`` -> ``/blocks/blocks.0/``; ``/Flatten`` -> ``/``."""
    head, sep, _ = node_name.rpartition("/")
    return head + sep


def name_unnamed_nodes(model: onnx.ModelProto) -> None:
    """Give each unnamed node the scope of the node that produces its first input."""
    taken = {n.name for n in model.graph.node if n.name}
    producer = {out: n for n in model.graph.node for out in n.output}
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        src = next((producer[x] for x in node.input if x in producer), None)
        name = f"{scope_of(src.name) if src is not None else '/'}{node.op_type}_{i}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)


def give_layers_own_weights(model: onnx.ModelProto) -> None:
    """Each conv / matmul gets its own weight and bias initializers, named after the node
    (``<node>.weight``): precisions can then differ between layers that shared a (zero) bias,
    and the nodes quantization adds around them carry the layer's scope. The exporter's
    Identity nodes that hand one initializer to several layers go away."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    aliases = {n.output[0]: n.input[0] for n in graph.node
               if n.op_type == "Identity" and n.input[0] in inits}
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        for i, name in enumerate(node.input):
            name = aliases.get(name, name)
            if i in _INPUT_ROLES and name in inits:
                own = onnx.TensorProto()
                own.CopyFrom(inits[name])
                own.name = f"{node.name}.{_INPUT_ROLES[i]}"
                graph.initializer.append(own)
                node.input[i] = own.name
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node if n.output[0] not in aliases or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(keep)
    drop_unused_initializers(model)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def scope_qdq_nodes(model: onnx.ModelProto, is_integer: Callable[[str], bool]) -> None:
    """Name each activation QuantizeLinear (and its DequantizeLinear) under the integer node it
    serves: the node whose output it quantizes, or else (a float tensor or the graph input
    entering an integer node) the first integer node it feeds."""
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        dqs = [d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"]
        src = producer.get(q.input[0])
        if src is not None and is_integer(src.name):
            scope, tag = scope_of(src.name), ""
        else:
            users = [u for d in dqs for u in consumers.get(d.output[0], []) if is_integer(u.name)]
            if not users:
                continue
            scope, tag = scope_of(users[0].name), "input_"
        for node in (q, *dqs):
            local = node.name.rpartition("/")[2]
            if not node.name.startswith(scope):
                node.name = scope + (local if local.startswith(tag) else tag + local)
