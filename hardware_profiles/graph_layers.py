"""What an ONNX graph asks of a device, layer by layer, independent of any device.

Each compute node becomes a :class:`Layer` with its operator class, the precision it runs at,
its multiply-accumulates, the bytes it moves and the density of its weights. The latency model
turns these into time on a profile; the graph is read as a deployment runtime would run it:

- QuantizeLinear / DequantizeLinear pairs of a QDQ graph are fused into the int8 kernels they
  surround, so they cost nothing themselves; a node whose weights come through a
  DequantizeLinear of int8 (int4) data runs at int8 (int4); a weight-less node runs at int8 when
  it reads a DequantizeLinear and its output is quantized again.
- fp16 simulated on an fp32 host (``spaces.quantization.fp16``): weights stored as fp16 and Cast to
  float run at fp16, as do nodes reading an activation rounded to fp16 (Cast to fp16 and back);
  those Casts are free, and an activation after a rounded conv still fuses into it.
- An activation (Relu, Clip, ...) directly after a convolution or matmul is fused into it.
- Shape-only nodes (Flatten, Reshape, Constant, ...) move no data and cost nothing.

That is the ``qdq`` reading: a runtime that fuses every QDQ pattern (TFLite-style int8 graphs on
a phone or an MCU). The ``onnxruntime`` reading (profiles with ``[layout] fusion =
"onnxruntime"``: ``host`` and every calibrated profile) reads the graph after onnxruntime's own
rewrites (``runtime_graph``): its ``QLinear*`` kernels run at int8, and each QuantizeLinear /
DequantizeLinear it could not fuse is a layer of its own, as is the float layer between them.
The ``onnxruntime_layout`` reading goes one step further and reads the graph after this machine's
layout rewrites too: blocked float convolutions (``nchwc.Conv``), NHWC int8 convolutions and the
Reorder / Transpose layers between them; each layer then names the kernel that runs it
(:attr:`Layer.kernel`), which a profile's per-kernel cost table prices (``kernel_costs``).
The ``litert`` reading is how LiteRT runs the .tflite converted from the same model: the ``qdq``
reading (its converter fuses every QDQ pattern into an int8 kernel), but only ReLU and ReLU6 fuse
into the layer before them, and each layer's kernel is named by its ONNX operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from edgeshrink.hardware_profiles.onnx_ops import (
    ACTIVATION_BYTES,
    BYTES_PER_ELEMENT,
    CLASS_OF_OP,
    FP16_TYPES,
    FREE_OPS,
    FUSABLE_ACTIVATIONS,
    INT4_TYPES,
    INT8_KERNEL_INPUTS,
    INT8_TYPES,
    LAYOUT_OPS,
    LITERT_FUSED_ACTIVATIONS,
    NCHWC_DOMAIN,
    QDQ_FOLDED_ACTIVATIONS,
    QDQ_OPS,
    RUNTIME_WEIGHTS,
    WEIGHT_INPUT,
)
from edgeshrink.hardware_profiles.profile_terms import FUSIONS


@dataclass(frozen=True)
class Layer:
    name: str
    op_type: str
    op_class: str  # conv, depthwise, pointwise, matmul, elementwise, pooling
    precision: str  # fp32, fp16, int8, int4
    macs: int  # dense multiply-accumulates at batch 1
    activation_elements: int  # inputs read plus outputs written, at batch 1
    weight_elements: int
    weight_density: float  # share of non-zero weights (1.0 when dense or weight-less)
    is_2to4: bool  # weights follow the 2:4 semi-structured pattern along the input axis
    output_elements: int
    # Convolutions and matmuls: channels in and out (0 otherwise), for kernels that work on
    # blocks of channels and pad the rest (onnxruntime's NCHWc, NEON's 4 lanes).
    in_channels: int = 0
    out_channels: int = 0
    depthwise: bool = False
    # Weights an operator computes at run time (a Dequantize the runtime did not fuse): kernels
    # that pre-pack weights into a blocked layout cannot take the layer; a generic one runs it.
    runtime_weights: bool = False
    # The runtime kernel that runs the layer ("nchwc.Conv", "QLinearConv", "Transpose", ...), in
    # the ``onnxruntime_layout`` reading only; "" otherwise.
    kernel: str = ""

    def blocked_macs(self, block: int) -> float:
        """MACs once the channels are padded to a multiple of ``block``."""
        if block <= 1 or not self.out_channels:
            return float(self.macs)
        pad_out = -(-self.out_channels // block) * block / self.out_channels
        if self.depthwise:
            return self.macs * pad_out
        return self.macs * pad_out * (-(-self.in_channels // block) * block / self.in_channels)

    def aligned(self, block: int) -> bool:
        """Whether the layer's channels suit blocked kernels: its input channels fill whole
        blocks, or it reads the image itself (a few channels, which such kernels read as they
        are). Weights computed at run time keep it off those kernels anyway (:meth:`path`)."""
        if block <= 1 or not self.out_channels:
            return True
        return self.in_channels % block == 0 or self.in_channels < 4

    def path(self, block: int) -> str:
        """Which kernel a runtime takes: its blocked fast path ("aligned"), the blocked path on
        padded channels ("unaligned"), or a generic kernel for weights computed at run time."""
        if self.runtime_weights:
            return "generic"
        return "aligned" if self.aligned(block) else "unaligned"

    def bytes_moved(self) -> float:
        return (self.activation_elements * ACTIVATION_BYTES[self.precision]
                + self.weight_elements * BYTES_PER_ELEMENT[self.precision])


def tensor_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's shape by onnx's shape inference, unknown dimensions (the batch) as 1."""
    inferred = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1
                           for d in vi.type.tensor_type.shape.dim]
    return shapes


def _through_qdq(node: onnx.NodeProto | None, producer: dict) -> str | None:
    """Operator class behind a DequantizeLinear(QuantizeLinear(x)) pair, if that is the input."""
    if node is None or node.op_type != "DequantizeLinear":
        return None
    q = producer.get(node.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    src = producer.get(q.input[0])
    return None if src is None else CLASS_OF_OP.get(src.op_type)


def _cast_to(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), 0)


def _is_fp16_rounding(node: onnx.NodeProto | None, producer: dict) -> bool:
    """Whether ``node`` is the Cast back to float of a Cast to fp16 (an fp16-rounded tensor)."""
    if node is None or node.op_type != "Cast" or _cast_to(node) != onnx.TensorProto.FLOAT:
        return False
    inner = producer.get(node.input[0])
    return (inner is not None and inner.op_type == "Cast"
            and _cast_to(inner) == onnx.TensorProto.FLOAT16)


def _behind_rounding(node: onnx.NodeProto | None, producer: dict) -> onnx.NodeProto | None:
    """The node that made a tensor, looking through an fp16 rounding pair."""
    if _is_fp16_rounding(node, producer):
        return producer.get(producer[node.input[0]].input[0])
    return node


def _conv_class(weight_shape: tuple[int, ...], group: int) -> str:
    if group > 1 and weight_shape[1] == 1:
        return "depthwise"
    if group == 1 and all(k == 1 for k in weight_shape[2:]):
        return "pointwise"
    return "conv"


def _is_2to4(w: np.ndarray) -> bool:
    """At most 2 non-zeros in every group of 4 consecutive input weights (per output row)."""
    flat = w.reshape(w.shape[0], -1)
    if flat.shape[1] % 4:
        return False
    return bool((np.count_nonzero(flat.reshape(flat.shape[0], -1, 4), axis=2) <= 2).all())


def analyse_graph(model: onnx.ModelProto | Path | str, fusion: str = "qdq") -> list[Layer]:
    """The graph's costly layers in execution order, as a deployment runtime would run them
    (``fusion``: one of FUSIONS, see the module's docstring)."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    runtime = fusion.startswith("onnxruntime")
    layout = fusion == "onnxruntime_layout"
    litert = fusion == "litert"
    fusable = LITERT_FUSED_ACTIVATIONS if litert else FUSABLE_ACTIVATIONS
    if runtime:
        from edgeshrink.hardware_profiles.runtime_graph import onnxruntime_graph

        model, shapes = onnxruntime_graph(model, layout=layout)
    else:
        shapes = tensor_shapes(model)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    quantized = {q.input[0] for q in graph.node if q.op_type == "QuantizeLinear"}

    def weight_of(name: str) -> tuple[np.ndarray | None, str]:
        """Weights behind an input, following a DequantizeLinear; and their storage precision."""
        if name in inits:
            t = inits[name]
            prec = "fp16" if t.data_type in FP16_TYPES else "fp32"
            return numpy_helper.to_array(t), prec
        node = producer.get(name)
        if (node is not None and node.op_type == "Cast" and node.input[0] in inits
                and inits[node.input[0]].data_type in FP16_TYPES):
            return numpy_helper.to_array(inits[node.input[0]]), "fp16"  # fp16, cast for the host
        if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in inits:
            t = inits[node.input[0]]
            prec = ("int4" if t.data_type in INT4_TYPES
                    else "int8" if t.data_type in INT8_TYPES else "fp32")
            # onnxruntime left the Dequantize standing: a float kernel reads float weights.
            return numpy_helper.to_array(t), RUNTIME_WEIGHTS if runtime else prec
        return None, "fp32"

    def activation_precision(node: onnx.NodeProto) -> str:
        if node.op_type in INT8_KERNEL_INPUTS:
            return "int8"
        srcs = [producer.get(i) for i in node.input if i and i not in inits]
        if runtime:  # anything onnxruntime could run at int8 it has fused into a QLinear op
            return "fp16" if srcs and _is_fp16_rounding(srcs[0], producer) else "fp32"
        if srcs and all(s is not None and s.op_type == "DequantizeLinear" for s in srcs):
            return "int8" if quantized & set(node.output) else "fp32"
        return "fp16" if srcs and _is_fp16_rounding(srcs[0], producer) else "fp32"

    def int8_tensor(name: str) -> bool:
        """Whether an int8 kernel, a Quantize or a layout change of either made the tensor."""
        node = producer.get(name)
        while node is not None and node.op_type in LAYOUT_OPS:
            node = producer.get(node.input[0])
        return node is not None and (node.op_type == "QuantizeLinear"
                                     or node.op_type in INT8_KERNEL_INPUTS)

    elements = {name: int(np.prod(dims)) if dims else 1 for name, dims in shapes.items()}
    layers: list[Layer] = []
    for node in graph.node:
        op = node.op_type
        if runtime and op in QDQ_OPS:  # a conversion onnxruntime could not fuse: it runs
            elems = sum(elements.get(i, 0) or (int(np.prod(inits[i].dims)) if i in inits else 0)
                        for i in node.input[:1])
            out = elements.get(node.output[0], elems)
            layers.append(Layer(name=node.name or f"{op}_{len(layers)}", op_type=op,
                                op_class="elementwise", precision="int8", macs=out,
                                activation_elements=elems + out, weight_elements=0,
                                weight_density=1.0, is_2to4=False, output_elements=out,
                                kernel=op if layout else ""))
            continue
        if (op in FREE_OPS and not (layout and op in LAYOUT_OPS)) or op not in CLASS_OF_OP:
            continue
        if op in fusable and not layout:  # layout: onnxruntime fused what it could
            src = _behind_rounding(producer.get(node.input[0]), producer)
            if src is not None and CLASS_OF_OP.get(src.op_type) in ("conv", "matmul"):
                continue  # fused into the convolution / matmul before it
            if (not runtime and op in QDQ_FOLDED_ACTIVATIONS
                    and _through_qdq(src, producer) in ("conv", "matmul")):
                continue  # int8: the clamp is folded into the output quantization range
        act_in = [i for i in node.input if i and i not in inits
                  and (producer.get(i) is None or producer[i].op_type != "Constant")]
        if op in INT8_KERNEL_INPUTS:
            act_in = [node.input[k] for k in INT8_KERNEL_INPUTS[op] if k < len(node.input)]
        out_elems = elements.get(node.output[0], 0)
        macs, w_elems, density, two_four, runtime_weights = 0, 0, 1.0, False, False
        c_in = c_out = 0
        op_class = CLASS_OF_OP[op]
        precision = activation_precision(node)
        if op in LAYOUT_OPS and int8_tensor(node.input[0]):
            precision = "int8"
        if op in WEIGHT_INPUT and len(node.input) > WEIGHT_INPUT[op]:
            w, w_prec = weight_of(node.input[WEIGHT_INPUT[op]])
            act_in = [node.input[0]]
            if w is not None:
                w_elems = int(w.size)
                density = float(np.count_nonzero(w)) / max(1, w.size)
                two_four = _is_2to4(w) and density <= 0.5
                runtime_weights = w_prec == RUNTIME_WEIGHTS
                if op not in INT8_KERNEL_INPUTS:
                    # float weights: a float layer, whatever its input
                    precision = "fp32" if runtime_weights else w_prec
                if op_class == "conv":
                    group = next((a.i for a in node.attribute if a.name == "group"), 1)
                    op_class = _conv_class(w.shape, group)
                    out_dims = shapes.get(node.output[0], [])
                    macs = int(np.prod(out_dims[1:])) * int(np.prod(w.shape[1:]))
                    c_in, c_out = int(w.shape[1]) * group, int(w.shape[0])
                else:
                    # Rows of the output at batch 1 (1 for a classifier head) times weights.
                    out_dims = shapes.get(node.output[0], [1])
                    macs = int(w.size) * max(1, out_elems // max(1, out_dims[-1]))
        elif op_class == "pooling":
            macs = sum(elements.get(i, 0) for i in act_in)
        else:
            macs = out_elems
        layers.append(Layer(
            name=node.name or f"{op}_{len(layers)}",
            op_type=op,
            op_class=op_class,
            precision=precision,
            macs=macs,
            activation_elements=sum(elements.get(i, 0) for i in act_in) + out_elems,
            weight_elements=w_elems,
            weight_density=density,
            is_2to4=two_four,
            output_elements=out_elems,
            in_channels=c_in,
            out_channels=c_out,
            depthwise=op_class == "depthwise",
            runtime_weights=runtime_weights,
            kernel=(("nchwc." if node.domain == NCHWC_DOMAIN else "") + op if layout
                    else op if litert else ""),
        ))
    return layers
