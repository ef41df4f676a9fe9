"""Names of the precisions the space may offer; the realisation is in ``quantization``."""

PRECISIONS = ("fp32", "int8")
