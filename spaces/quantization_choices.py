"""Names of the precisions the space may offer; the realisation is in ``quantization``."""

PRECISIONS = ("fp32", "fp16", "int8", "int4")  # int4: 4-bit weights, int8 activations
