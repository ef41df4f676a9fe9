"""Weight bytes of an exported ONNX file (fp32, fp16, or QDQ int8/int4), dense and sparse.

Weights are the weight and bias initializers of the compute nodes (:data:`WEIGHT_INPUTS`),
followed through a DequantizeLinear to the stored int8/int4/int32 data, or through a Cast to
the stored fp16 data (fp16 simulated on an fp32 host). Per tensor:

- ``dense_bytes``: every element at its stored precision, ``ceil(elements * bits / 8)``.
- the sparse format a runtime would store:
  - ``2:4`` (the tensor has at least 2 zeros in every group of 4 along its input axis): half
    the elements as values plus a 2-bit position per kept value,
    ``ceil(elements / 2 * (bits + 2) / 8)``;
  - ``bitmask`` (any other tensor): the non-zeros as values plus 1 bit per element,
    ``ceil(nonzeros * bits / 8) + ceil(elements / 8)``.
- ``sparse_bytes``: the smaller of dense and that sparse format (``format`` says which).

Quantization scales and zero points are counted apart (``quant_param_bytes``): both formats
store them alike. What a target device actually stores is the hardware profile's
``device_weight_bytes`` (hardware_profiles.latency_model), not this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# Registry: op type -> (weight input index, bias input index or None).
WEIGHT_INPUTS: dict[str, tuple[int, int | None]] = {
    "Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1, None),
    "ConvInteger": (1, None), "MatMulInteger": (1, None),
    "QLinearConv": (3, 8), "QLinearMatMul": (3, None),
}
_BITS = {
    onnx.TensorProto.FLOAT: 32, onnx.TensorProto.DOUBLE: 64, onnx.TensorProto.FLOAT16: 16,
    onnx.TensorProto.BFLOAT16: 16, onnx.TensorProto.INT8: 8, onnx.TensorProto.UINT8: 8,
    onnx.TensorProto.INT16: 16, onnx.TensorProto.UINT16: 16, onnx.TensorProto.INT32: 32,
    **{getattr(onnx.TensorProto, n): 4 for n in ("INT4", "UINT4") if hasattr(onnx.TensorProto, n)},
}


@dataclass(frozen=True)
class TensorSize:
    name: str
    node: str  # the compute node that reads it
    role: str  # "weight" or "bias"
    shape: tuple[int, ...]
    bits: int  # stored bits per element
    elements: int
    nonzeros: int
    pattern: str  # "dense" (no zeros), "2:4", or "unstructured"
    format: str  # the smaller storage: "dense", "2:4" or "bitmask"
    dense_bytes: int
    sparse_bytes: int


@dataclass(frozen=True)
class WeightSizes:
    dense_bytes: int
    sparse_bytes: int
    quant_param_bytes: int
    tensors: list[TensorSize]


def _rows_along_input(w: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
    """One row per output unit, its input weights in order (the axis 2:4 groups run along)."""
    if w.ndim < 2:
        return w.reshape(1, -1)
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    if node.op_type in ("MatMul", "MatMulInteger", "QLinearMatMul") or (
            node.op_type == "Gemm" and not trans_b):
        w = w.T  # stored [in, out]
    return w.reshape(w.shape[0], -1)


def _follows_2_4(rows: np.ndarray) -> bool:
    if rows.shape[1] % 4:
        return False
    return bool(((rows.reshape(rows.shape[0], -1, 4) == 0).sum(-1) >= 2).all())


def _tensor_size(t: onnx.TensorProto, node: onnx.NodeProto, role: str) -> TensorSize:
    w = numpy_helper.to_array(t)
    bits = _BITS.get(t.data_type, 32)
    n, nnz = int(w.size), int(np.count_nonzero(w))
    dense = math.ceil(n * bits / 8)
    two_four = role == "weight" and nnz < n and _follows_2_4(_rows_along_input(w, node))
    if two_four:
        sparse, fmt = math.ceil(n / 2 * (bits + 2) / 8), "2:4"
    else:
        sparse, fmt = math.ceil(nnz * bits / 8) + math.ceil(n / 8), "bitmask"
    pattern = "dense" if nnz == n else "2:4" if two_four else "unstructured"
    if dense <= sparse:
        sparse, fmt = dense, "dense"
    return TensorSize(t.name, node.name, role, tuple(w.shape), bits, n, nnz, pattern, fmt,
                      dense, sparse)


def weight_sizes(model: onnx.ModelProto | Path | str) -> WeightSizes:
    """Dense and sparse weight bytes of an ONNX file, in total and per tensor."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inits = {t.name: t for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    tensors: dict[str, TensorSize] = {}
    quant_params: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in WEIGHT_INPUTS:
            continue
        for role, index in zip(("weight", "bias"), WEIGHT_INPUTS[node.op_type], strict=True):
            if index is None or index >= len(node.input) or not node.input[index]:
                continue
            name = node.input[index]
            dq = producer.get(name)
            if name not in inits and dq is not None and dq.op_type == "DequantizeLinear":
                name = dq.input[0]  # the stored (int8/int4/int32) data
                quant_params.update(i for i in dq.input[1:] if i in inits)
            elif name not in inits and dq is not None and dq.op_type == "Cast":
                name = dq.input[0]  # fp16 weights cast to float for an fp32 host
            if name in inits and name not in tensors:  # a shared tensor is stored once
                tensors[name] = _tensor_size(inits[name], node, role)
    qbytes = sum(math.ceil(numpy_helper.to_array(inits[q]).size * _BITS.get(inits[q].data_type,
                                                                            32) / 8)
                 for q in quant_params)
    sizes = list(tensors.values())
    return WeightSizes(sum(s.dense_bytes for s in sizes), sum(s.sparse_bytes for s in sizes),
                       qbytes, sizes)
