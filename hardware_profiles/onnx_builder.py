"""Build small ONNX networks from seeded numpy weights, without torch.

The latency gauge and the calibration micro-benchmarks are made this way so that a device with
only onnxruntime and numpy installed can build them, and every machine gets the same bytes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeshrink.core.channel_rounding import se_channels

ACTIVATION_OPS = {"relu": "Relu", "hswish": "HardSwish"}


class GraphBuilder:
    """Just enough of a builder for a MobileNet-like stack of convolutions."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.n = rng, [], [], 0
        self.scope = ""  # node-name prefix, so a quantization plan can pick a part of the graph

    def name(self, kind: str) -> str:
        self.n += 1
        return f"{self.scope}{kind}{self.n}"

    def tensor(self, array: np.ndarray) -> str:
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             relu: bool = True, act: str = "relu") -> str:
        """A convolution with bias, followed by ``act`` (relu, relu6, hswish) unless not relu."""
        fan_in = cin // groups * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // groups, k, k))
        b = self.rng.normal(0, 0.01, cout)
        out = self.name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self.tensor(w), self.tensor(b)], [out], name=out, kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        return self.activation(out, act) if relu else out

    def activation(self, x: str, act: str) -> str:
        """As torch exports them: ReLU6 is a Clip with constant bounds, hard-swish one op."""
        if act == "relu6":
            return self.op("Clip", [x, self.tensor(np.array(0.0)), self.tensor(np.array(6.0))])
        return self.op(ACTIVATION_OPS[act], [x])

    def squeeze_excite(self, x: str, channels: int) -> str:
        """MobileNetV3's SE as torchvision's SqueezeExcitation exports it (hard-sigmoid gate)."""
        squeezed = se_channels(channels)
        s = self.op("GlobalAveragePool", [x])
        s = self.conv(s, channels, squeezed, 1)
        s = self.conv(s, squeezed, channels, 1, relu=False)
        gate = self.op("HardSigmoid", [s], alpha=1.0 / 6.0, beta=0.5)
        return self.op("Mul", [x, gate])

    def inverted_residual(self, x: str, cin: int, cout: int, expansion: int, stride: int,
                          kernel: int = 3, se: bool = False, act: str = "relu",
                          mid: int | None = None) -> str:
        """``mid``: the expanded channels when pruning left fewer than ``cin * expansion``."""
        mid = mid or cin * expansion
        h = self.conv(x, cin, mid, 1, act=act) if expansion > 1 else x
        h = self.conv(h, mid, mid, kernel, stride, groups=mid, act=act)
        if se:
            h = self.squeeze_excite(h, mid)
        h = self.conv(h, mid, cout, 1, relu=False)
        return self.op("Add", [x, h]) if stride == 1 and cin == cout else h

    def separable(self, x: str, cin: int, cout: int, stride: int, kernel: int = 3,
                  se: bool = False, act: str = "relu") -> str:
        """Depthwise-separable block: depthwise (+ SE), pointwise; residual if shapes match."""
        h = self.conv(x, cin, cin, kernel, stride, groups=cin, act=act)
        if se:
            h = self.squeeze_excite(h, cin)
        h = self.conv(h, cin, cout, 1, act=act)
        return self.op("Add", [x, h]) if stride == 1 and cin == cout else h

    def linear(self, x: str, fin: int, fout: int) -> str:
        w = self.rng.normal(0, np.sqrt(1.0 / fin), (fout, fin))
        out = self.name("gemm")
        self.nodes.append(helper.make_node(
            "Gemm", [x, self.tensor(w), self.tensor(np.zeros(fout))], [out], name=out, transB=1))
        return out

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
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
