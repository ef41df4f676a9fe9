"""ONNX operator tables the graph reading works from: which class an op type belongs to, where
its weights are, what fuses and what is free. Data, kept apart from the reading itself."""

from __future__ import annotations

import onnx

# Registry: ONNX op type -> operator class. Conv is refined by its shape (see _conv_class).
CLASS_OF_OP: dict[str, str] = {
    "Conv": "conv", "ConvInteger": "conv", "QLinearConv": "conv",
    "Gemm": "matmul", "MatMul": "matmul", "MatMulInteger": "matmul", "QLinearMatMul": "matmul",
    "Add": "elementwise", "Mul": "elementwise", "Sub": "elementwise", "Div": "elementwise",
    "Relu": "elementwise", "Clip": "elementwise", "Sigmoid": "elementwise",
    "HardSigmoid": "elementwise", "HardSwish": "elementwise", "LeakyRelu": "elementwise",
    "BatchNormalization": "elementwise", "QLinearAdd": "elementwise", "QLinearMul": "elementwise",
    "GlobalAveragePool": "pooling", "AveragePool": "pooling", "MaxPool": "pooling",
    "QLinearGlobalAveragePool": "pooling",
    # onnxruntime's fused kernels (com.microsoft domain), seen in the ``onnxruntime`` reading.
    "FusedConv": "conv", "FusedGemm": "matmul", "QGemm": "matmul",
    "QLinearSigmoid": "elementwise", "QLinearLeakyRelu": "elementwise",
    "QLinearAveragePool": "pooling",
    # Layout changes, seen only in the ``onnxruntime_layout`` reading (elsewhere Transpose is free).
    "Transpose": "elementwise", "ReorderInput": "elementwise", "ReorderOutput": "elementwise",
}
LAYOUT_OPS = frozenset({"Transpose", "ReorderInput", "ReorderOutput"})
NCHWC_DOMAIN = "com.microsoft.nchwc"  # onnxruntime's blocked-channel float kernels
# Which input holds the weights, by op type (the others read only activations).
WEIGHT_INPUT = {"Conv": 1, "FusedConv": 1, "Gemm": 1, "FusedGemm": 1, "MatMul": 1,
                "QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3}
# onnxruntime's int8 kernels and the inputs that carry activations (the rest: scales, zeros).
INT8_KERNEL_INPUTS = {"QLinearConv": (0,), "QLinearMatMul": (0,), "QGemm": (0,),
                      "QLinearAdd": (0, 3), "QLinearMul": (0, 3),
                      "QLinearGlobalAveragePool": (0,), "QLinearAveragePool": (0,),
                      "QLinearSigmoid": (0,), "QLinearLeakyRelu": (0,)}
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
RUNTIME_WEIGHTS = "dequantized at run time"  # weight_of's answer for an unfused Dequantize
FREE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Flatten", "Reshape", "Constant",
                      "Identity", "Shape", "Squeeze", "Unsqueeze", "Transpose", "Gather",
                      "Concat", "Cast"})
FUSABLE_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish",
                                 "Sigmoid"})
# What LiteRT's converter fuses into the convolution or matmul before it (TFLite's
# fused_activation_function: RELU, RELU6); hard-swish, hard-sigmoid and the rest stay operators.
LITERT_FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})
# Int8 kernels clamp for free: their output range already cuts what ReLU / Clip would.
# (HardSwish / HardSigmoid stay separate int8 kernels, as in TFLite and onnxruntime.)
QDQ_FOLDED_ACTIVATIONS = frozenset({"Relu", "Clip"})
BYTES_PER_ELEMENT = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}  # weights
# Activations: int4 is a weight format (CMSIS-NN's and onnxruntime's int4 kernels read and write
# int8 activations), so an int4 layer moves its activations at a byte each.
ACTIVATION_BYTES = {**BYTES_PER_ELEMENT, "int4": 1.0}
INT8_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
INT4_TYPES = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4")
               if hasattr(onnx.TensorProto, n)}
FP16_TYPES = {onnx.TensorProto.FLOAT16}
