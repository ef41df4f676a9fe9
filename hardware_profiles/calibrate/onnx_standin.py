"""What the calibration bundle ships as ``onnx`` for a device that lacks it (``calibrate.bundle``).

Reading the graph onnxruntime runs (``graph_layers``, ``runtime_graph``, ``onnx_ops``) needs
onnx's protobuf messages and three helpers, not onnx's compiled library, whose wheel is made for
one CPU and Python. The messages come from onnx's own descriptor (``onnx-ml.desc``, written
beside this file when bundling) through protobuf, which onnxruntime installs; the helpers do what
onnx's do for the tensors onnxruntime writes. The bundle puts this folder last on the path, so a
real onnx, where installed, is used instead; tests read the calibration graphs through both and
compare. Only the bundle imports this, as the package ``onnx``.
"""

from __future__ import annotations

import sys
import types
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_DATA = resources.files(__name__).joinpath("onnx-ml.desc").read_bytes()  # on_device.ONNX_DESCRIPTOR
_POOL = descriptor_pool.DescriptorPool()
_POOL.AddSerializedFile(_DATA)
_PACKAGE = descriptor_pb2.FileDescriptorProto.FromString(_DATA).package


def _message(name: str) -> Any:
    descriptor = _POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(_POOL).GetPrototype(descriptor)


ModelProto = _message("ModelProto")
GraphProto = _message("GraphProto")
NodeProto = _message("NodeProto")
AttributeProto = _message("AttributeProto")
TensorProto = _message("TensorProto")
ValueInfoProto = _message("ValueInfoProto")
TypeProto = _message("TypeProto")
TensorShapeProto = _message("TensorShapeProto")


def load(f: str | Path | Any, *_: object, **__: object) -> Any:
    """A model from a path or a binary file object (no external data: calibration has none)."""
    data = f.read() if hasattr(f, "read") else Path(f).read_bytes()
    return ModelProto.FromString(data)


load_model = load


def _make_empty_tensor_value_info(name: str) -> Any:
    info = ValueInfoProto()
    info.name = name
    return info


_DTYPES = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64,
           TensorProto.FLOAT16: np.float16, TensorProto.INT8: np.int8,
           TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16,
           TensorProto.UINT16: np.uint16, TensorProto.INT32: np.int32,
           TensorProto.UINT32: np.uint32, TensorProto.INT64: np.int64,
           TensorProto.UINT64: np.uint64, TensorProto.BOOL: np.bool_}
# Where a tensor keeps its values when not as raw bytes (onnx.proto's comments).
_FIELDS = {TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data",
           TensorProto.INT64: "int64_data", TensorProto.UINT32: "uint64_data",
           TensorProto.UINT64: "uint64_data"}  # the rest: int32_data


def _to_array(tensor: Any, base_dir: str = "") -> np.ndarray:
    """A tensor's values as numpy, as onnx.numpy_helper.to_array gives them for these types."""
    if tensor.data_location == TensorProto.EXTERNAL:
        raise ValueError(f"tensor {tensor.name!r} keeps its data in another file; install onnx")
    dtype = _DTYPES.get(tensor.data_type)
    if dtype is None:
        kind = TensorProto.DataType.Name(tensor.data_type)
        raise ValueError(f"tensor {tensor.name!r} is {kind}, which this reader does not take; "
                         "install onnx")
    shape = tuple(tensor.dims)
    if tensor.HasField("raw_data"):  # little-endian, as ONNX stores it
        return np.frombuffer(tensor.raw_data, np.dtype(dtype).newbyteorder("<")).astype(
            dtype).reshape(shape)
    values = getattr(tensor, _FIELDS.get(tensor.data_type, "int32_data"))
    if tensor.data_type == TensorProto.FLOAT16:  # the fp16 bits, one per int32
        return np.asarray(values, np.uint16).view(np.float16).reshape(shape)
    return np.asarray(values, dtype).reshape(shape)


def _infer_shapes(*_: object, **__: object) -> Any:
    raise NotImplementedError("onnx's shape inference is not in the calibration bundle; "
                              "install onnx")


def _submodule(name: str, **members: Any) -> types.ModuleType:
    module = types.ModuleType(f"{__name__}.{name}")
    module.__dict__.update(members)
    sys.modules[module.__name__] = module
    return module


helper = _submodule("helper", make_empty_tensor_value_info=_make_empty_tensor_value_info)
numpy_helper = _submodule("numpy_helper", to_array=_to_array)
shape_inference = _submodule("shape_inference", infer_shapes=_infer_shapes)
