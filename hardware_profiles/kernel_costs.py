"""Per-kernel latency: a linear cost per runtime kernel, fitted to timings on the device.

One efficiency per operator class cannot hold what a real kernel library does. On this host, for
example, onnxruntime's int8 depthwise kernel runs 16 channels at a time and the rest one by one,
so 12 channels take three times as long as 16. nn-Meter predicts such kernels with one
regressor per kernel type, trained on sampled configurations; this is the readable version of
that idea. Each kernel (``Layer.kernel``, precision and operator class, e.g. ``"QLinearConv
depthwise int8"``) costs

    layer_us + ns per MAC in whole channel vectors + ns per MAC in a half vector left over
             + ns per MAC in single channels left over + ns per output pixel
             + ns per channel (depthwise: one group each) + ns per weight

summed over the layers, plus the profile's per-inference overhead. The weight term stands for
what a kernel pays to read (and, for weights dequantized at run time, to repack) its weights on
every run; adding it took the fidelity benchmark from 80% to 94% of predictions within 10%.
``profile calibrate`` fits the numbers (non-negative least squares) and writes them to the
profile's ``[kernels]`` table; a layer whose kernel the table lacks is priced by the roofline.
"""

from __future__ import annotations

from edgeshrink.hardware_profiles.graph_layers import Layer

CONV_CLASSES = frozenset({"conv", "depthwise", "pointwise"})
# A missing tail rate costs those MACs as whole vectors do (what a kernel without tails would).
TERM_FALLBACK = {"mac_single_ns": ("mac_half_ns", "mac_ns"), "mac_half_ns": ("mac_ns",)}


def kernel_key(layer: Layer) -> str:
    return f"{layer.kernel} {layer.op_class} {layer.precision}"


def kernel_units(layer: Layer, vector: int) -> dict[str, float]:
    """How many of each term's units the layer has (``vector``: channels a kernel step takes)."""
    units = {"layer_us": 1.0}
    if layer.op_class in CONV_CLASSES and layer.out_channels:
        channels = layer.out_channels
        per_channel = layer.macs / channels
        half = max(1, vector // 2)
        whole, rest = divmod(channels, vector)
        halves, singles = divmod(rest, half)
        units["mac_ns"] = per_channel * whole * vector
        units["mac_half_ns"] = per_channel * halves * half
        units["mac_single_ns"] = per_channel * singles
        units["pixel_ns"] = layer.output_elements / channels
        if layer.depthwise:
            units["channel_ns"] = float(channels)
        if layer.weight_elements:
            units["weight_ns"] = float(layer.weight_elements)
    else:
        units["mac_ns"] = float(layer.macs)
    return {term: n for term, n in units.items() if n}


def kernel_ms(layer: Layer, costs: dict[str, float], vector: int) -> float:
    """The layer's time by its kernel's ``costs`` (a ``[kernels]`` entry)."""
    total_ns = 0.0
    for term, n in kernel_units(layer, vector).items():
        rate = costs.get(term)
        for other in TERM_FALLBACK.get(term, ()):
            if rate is not None:
                break
            rate = costs.get(other)
        if term == "layer_us":
            total_ns += (rate or 0.0) * 1e3
        else:
            total_ns += (rate or 0.0) * n
    return total_ns / 1e6
