"""The profile format's vocabulary, without pydantic: the names the schema checks against and the
timing settings. Apart from ``profile_schema`` so that calibration (the latency reading, the fit,
the TOML writer) runs on a device that has only numpy and onnxruntime (``calibrate.bundle``)."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 2
KINDS = ("cpu", "gpu", "npu", "mcu")
LATENCY_METHODS = ("measured", "predicted")
OP_CLASSES = ("conv", "depthwise", "pointwise", "matmul", "elementwise", "pooling")
SPARSITY_SUPPORT = ("none", "2:4", "unstructured")
DRIFT_CORRECTIONS = ("gauge", "none")
# How a runtime fuses QDQ graphs (and lays data out); see graph_layers.
FUSIONS = ("qdq", "onnxruntime", "onnxruntime_layout", "litert")
# The readings that name each layer's kernel, so a [kernels] table can price it.
KERNEL_FUSIONS = ("onnxruntime_layout", "litert")
# What a measured profile times the file with (hardware_profiles.runtimes).
RUNTIMES = ("onnxruntime", "litert")
# A [kernels] entry's terms (kernel_costs): "layer_us" in microseconds, the rest in ns per unit.
KERNEL_TERMS = ("layer_us", "mac_ns", "mac_half_ns", "mac_single_ns", "pixel_ns", "channel_ns",
                "weight_ns")
# Kernel paths (graph_layers.Layer.path) and what each falls back to without its own number.
PATH_FALLBACK: dict[str, tuple[str, ...]] = {
    "aligned": ("aligned",), "unaligned": ("unaligned", "aligned"),
    "generic": ("generic", "unaligned", "aligned")}
PATHS = ("generic", "unaligned")  # the paths off the blocked fast path: their own tables


@dataclass(frozen=True)
class Measurement:
    """How measure.py times a model: a profile's [measurement] table, or a caller's settings."""

    intra_op_threads: int = 1
    warmup_runs: int = 30
    min_runs: int = 200
    min_seconds: float = 0.3
    # "gauge": time a fixed reference network between runs and divide the host's drift out.
    drift_correction: str = "gauge"
    # "onnxruntime" times the .onnx file; "litert" a .tflite twin with LiteRT's XNNPACK delegate.
    runtime: str = "onnxruntime"
