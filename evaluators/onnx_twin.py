"""A torch module that computes an ONNX graph node by node: the calibration micro-benchmarks'
way to LiteRT.

``profile calibrate`` builds its micro-benchmarks as ONNX graphs (``onnx_builder``, seeded, the
same bytes everywhere). LiteRT's converter takes torch, so ``calibrate --runtime litert`` converts
this twin: the same operators with the same weights, so the .tflite it times and the ONNX graph
its layers are read from describe one network. Each node is a submodule, so the nodes a plan
runs at int8 pick modules for partial int8 (:meth:`OnnxTwin.onnx_name`). Float graphs only: a
quantized one has lost what its quantizer folded into Quantize ranges (ReLU6 clamps), and LiteRT
quantizes the float network itself. Only the operators the builder writes (and the search's
exporter uses) are known; any other is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError


class _Fn(nn.Module):
    """A weight-less operator."""

    def __init__(self, fn: Callable[..., torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}



def _conv(node: onnx.NodeProto, consts: list[np.ndarray]) -> nn.Module:
    weight, bias = consts[0], consts[1] if len(consts) > 1 else None
    a = _attrs(node)
    pads, group = list(a.get("pads", [0, 0, 0, 0])), int(a.get("group", 1))
    if pads[:2] != pads[2:]:
        raise EdgeshrinkError(f"node {node.name}: asymmetric padding {pads} has no twin")
    conv = nn.Conv2d(weight.shape[1] * group, weight.shape[0], tuple(weight.shape[2:]),
                     tuple(a.get("strides", [1, 1])), tuple(pads[:2]), groups=group,
                     bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            conv.bias.copy_(torch.from_numpy(bias))
    return conv


def _gemm(node: onnx.NodeProto, consts: list[np.ndarray]) -> nn.Module:
    weight = consts[0] if _attrs(node).get("transB", 0) else consts[0].T
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=len(consts) > 1)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        if len(consts) > 1:
            linear.bias.copy_(torch.from_numpy(consts[1]))
    return linear


def _clip(node: onnx.NodeProto, consts: list[np.ndarray]) -> nn.Module:
    low, high = (float(c) for c in consts[:2])
    return nn.ReLU6() if (low, high) == (0.0, 6.0) else nn.Hardtanh(low, high)


def _hard_sigmoid(node: onnx.NodeProto, consts: list[np.ndarray]) -> nn.Module:
    a = _attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if np.isclose(alpha, 1 / 6) and beta == 0.5:
        return nn.Hardsigmoid()  # as torchvision's SE gate exports
    return _Fn(lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0))


def _concat(node: onnx.NodeProto, consts: list[np.ndarray]) -> nn.Module:
    axis = int(_attrs(node)["axis"])
    return _Fn(lambda *xs: torch.cat(xs, axis))


# ONNX op type -> the module computing it, from the node and its constant inputs (in order).
OPS: dict[str, Callable[[onnx.NodeProto, list[np.ndarray]], nn.Module]] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "Clip": _clip,
    "HardSigmoid": _hard_sigmoid,
    "Concat": _concat,
    "Relu": lambda n, c: nn.ReLU(),
    "HardSwish": lambda n, c: nn.Hardswish(),
    "Add": lambda n, c: _Fn(torch.add),
    "Mul": lambda n, c: _Fn(torch.mul),
    "GlobalAveragePool": lambda n, c: nn.AdaptiveAvgPool2d(1),
    "Flatten": lambda n, c: nn.Flatten(int(_attrs(n).get("axis", 1))),
    "Identity": lambda n, c: nn.Identity(),
}


class OnnxTwin(nn.Module):
    """``OnnxTwin(model)(x)`` computes what onnxruntime computes on the float graph ``model``."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        consts = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
        self.input, self.output = graph.input[0].name, graph.output[0].name
        self.names: list[str] = []
        self.wiring: list[tuple[list[str], str]] = []
        self.nodes = nn.ModuleList()
        for node in graph.node:
            if node.op_type not in OPS:
                raise EdgeshrinkError(f"node {node.name}: {node.op_type} has no torch twin "
                                      f"(known: {', '.join(OPS)})")
            self.nodes.append(OPS[node.op_type](node, [consts[i] for i in node.input
                                                       if i in consts]))
            self.names.append(node.name)
            self.wiring.append(([i for i in node.input if i and i not in consts], node.output[0]))

    def onnx_name(self, module_path: str) -> str:
        """The ONNX node a submodule (``nodes.7...``) computes; "" for the twin itself."""
        parts = module_path.split(".")
        return self.names[int(parts[1])] if len(parts) > 1 and parts[0] == "nodes" else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input: x}
        for module, (inputs, output) in zip(self.nodes, self.wiring, strict=True):
            env[output] = module(*(env[i] for i in inputs))
        return env[self.output]
