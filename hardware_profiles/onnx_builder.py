"""Build small ONNX networks from seeded numpy weights, without torch.

The latency gauge and the calibration micro-benchmarks are made this way so that a device with
only onnxruntime and numpy installed can build them, and every machine gets the same bytes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Just enough of a builder for a MobileNet-like stack of convolutions."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.n = rng, [], [], 0

    def name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def tensor(self, array: np.ndarray) -> str:
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> str:
        fan_in = cin // groups * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // groups, k, k))
        b = self.rng.normal(0, 0.01, cout)
        out = self.name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self.tensor(w), self.tensor(b)], [out], kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        if not relu:
            return out
        act = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [out], [act]))
        return act

    def inverted_residual(self, x: str, cin: int, cout: int, expansion: int, stride: int,
                          kernel: int = 3) -> str:
        mid = cin * expansion
        h = self.conv(x, cin, mid, 1)
        h = self.conv(h, mid, mid, kernel, stride, groups=mid)
        h = self.conv(h, mid, cout, 1, relu=False)
        if stride == 1 and cin == cout:
            out = self.name("add")
            self.nodes.append(helper.make_node("Add", [x, h], [out]))
            return out
        return h

    def linear(self, x: str, fin: int, fout: int) -> str:
        w = self.rng.normal(0, np.sqrt(1.0 / fin), (fout, fin))
        out = self.name("gemm")
        self.nodes.append(helper.make_node(
            "Gemm", [x, self.tensor(w), self.tensor(np.zeros(fout))], [out], transB=1))
        return out

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def model(self, input_shape: list[int | str], output: str, output_shape: list[int | str],
              opset: int = 17) -> onnx.ModelProto:
        """Wrap the nodes into a checked model with one float input named ``input``."""
        out = self.op("Identity", [output])
        graph = helper.make_graph(
            self.nodes, "edgeshrink_built",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, output_shape)],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="edgeshrink")
        onnx.checker.check_model(model)
        return model
