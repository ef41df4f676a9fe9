"""Shorten the tensor names of an exported ONNX file: bytes a deployment should not ship.

The exporter and the quantizer name every tensor after its module path
(``/blocks/blocks.2/conv/conv.0/conv.0.0/Conv.weight_quantized_scale``); on a student of a few
thousand weights those names outweigh the weights (measured: 30 KB of a 57 KB int8 file). Node
names keep their module paths, since the per-layer latency breakdown and the mixed-precision
scopes are read from them; the graph's input and output names stay as the user calls them.
"""

from __future__ import annotations

from pathlib import Path

import onnx


def compact_tensor_names(path: Path | str) -> None:
    """Rename every inner tensor (initializers included) to ``t<n>``, in place."""
    model = onnx.load(str(path))
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
