"""Predict an ONNX file's latency, memory and energy on a profile: a per-layer roofline.

Each layer takes the longer of its compute time (MACs at its precision, over the profile's peak
times the efficiency of its operator class) and its memory time (bytes moved over bandwidth),
plus a fixed dispatch overhead; the network adds a per-inference overhead. Sparsity only
shortens a layer where the profile's kernels can exploit it. nn-Meter, Once-for-All and APQ
predict per kernel or per block in the same spirit; a profile's numbers stay readable and
calibratable (``edgeshrink profile calibrate``) instead of hidden in a trained predictor.
A calibrated profile also carries a linear cost per runtime kernel (``kernel_costs``); a layer
whose kernel it lists is priced by that, every other layer by the roofline.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu
from edgeshrink.hardware_profiles.graph_layers import Layer, analyse_graph
from edgeshrink.hardware_profiles.kernel_costs import kernel_key, kernel_ms
from edgeshrink.hardware_profiles.onnx_ops import ACTIVATION_BYTES, BYTES_PER_ELEMENT
from edgeshrink.hardware_profiles.registry import Profile, ProfileError

_2TO4_METADATA = 1.125  # 2:4 storage: half the values plus 2-bit indices per kept value


@dataclass(frozen=True)
class LayerTime:
    name: str
    op_type: str
    op_class: str
    precision: str
    macs: int
    effective_macs: int  # with channels padded to the kernels' block, less exploited sparsity
    bytes: int
    bound: str  # "compute" or "memory" (roofline), or "kernel" (the profile's kernel table)
    ms: float


@dataclass(frozen=True)
class Prediction:
    profile: str
    total_ms: float
    layers: list[LayerTime]
    weight_bytes: int  # as stored on the device
    peak_activation_bytes: int  # largest input + output of one layer (tensors live together)
    energy_mj: float | None
    fits_memory: bool
    memory_problems: tuple[str, ...]
    # Largest use of a limited memory as a share of it, minus 1 (> 0: does not fit); None when
    # the device has no memory limits.
    memory_overflow: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def layer_ms(self) -> dict[str, float]:
        return {f"{i:02d} {lt.op_class} {lt.name}": round(lt.ms, 6)
                for i, lt in enumerate(self.layers)}


def _sparse_factor(layer: Layer, profile: Profile) -> tuple[float, float]:
    """(compute factor, weight-storage factor) that the profile's sparse kernels achieve."""
    sparsity = 1.0 - layer.weight_density
    if layer.weight_elements == 0:
        return 1.0, 1.0
    if profile.sparsity_support == "2:4" and layer.is_2to4:
        return 0.5, 0.5 * _2TO4_METADATA
    if profile.sparsity_support == "unstructured" and sparsity >= profile.min_sparsity > 0:
        # Values plus one index per value (CSR-like): pays off only above min_sparsity.
        return layer.weight_density, min(1.0, 2.0 * layer.weight_density)
    return 1.0, 1.0


def predict_layers(layers: list[Layer], profile: Profile) -> Prediction:
    times: list[LayerTime] = []
    weight_bytes = 0.0
    peak_act = 0.0
    energy_pj = 0.0
    for layer in layers:
        if layer.precision not in profile.peak_gmacs:
            raise ProfileError(
                f"profile {profile.name!r} cannot run {layer.precision} (layer {layer.name}); "
                f"it runs {list(profile.precisions)}"
            )
        compute_f, storage_f = _sparse_factor(layer, profile)
        size = BYTES_PER_ELEMENT[layer.precision]
        block = profile.block_for(layer.precision)
        eff_macs = layer.blocked_macs(block) * compute_f
        w_bytes = layer.weight_elements * size * storage_f
        act_bytes = layer.activation_elements * ACTIVATION_BYTES[layer.precision]
        moved = act_bytes + w_bytes
        throughput = profile.peak_gmacs[layer.precision] * 1e9 * profile.efficiency_for(
            layer.op_class, layer.precision, layer.path(block))
        compute_s = eff_macs / throughput
        memory_s = moved / (profile.bandwidth_gbps * 1e9)
        ms = max(compute_s, memory_s) * 1e3 + profile.layer_overhead_us(layer.precision) / 1e3
        bound = "compute" if compute_s >= memory_s else "memory"
        costs = profile.kernels.get(kernel_key(layer)) if layer.kernel else None
        if costs is not None:
            ms, bound = kernel_ms(layer, costs, profile.kernel_vector), "kernel"
        times.append(LayerTime(layer.name, layer.op_type, layer.op_class, layer.precision,
                               layer.macs, round(eff_macs), round(moved), bound, ms))
        weight_bytes += w_bytes
        peak_act = max(peak_act, act_bytes)
        if profile.has_energy:
            energy_pj += (eff_macs * profile.pj_per_mac.get(layer.precision, 0.0)
                          + moved * profile.pj_per_byte)
    problems, uses = [], []
    if profile.storage_bytes is not None:
        uses.append(weight_bytes / profile.storage_bytes)
        if weight_bytes > profile.storage_bytes:
            problems.append(f"weights need {weight_bytes:,.0f} B of {profile.storage_bytes:,} B "
                            "storage")
    if profile.ram_bytes is not None:
        uses.append(peak_act / profile.ram_bytes)
        if peak_act > profile.ram_bytes:
            problems.append(f"activations need {peak_act:,.0f} B of {profile.ram_bytes:,} B RAM")
    return Prediction(
        profile=profile.name,
        total_ms=sum(t.ms for t in times) + profile.per_inference_us / 1e3,
        layers=times,
        weight_bytes=round(weight_bytes),
        peak_activation_bytes=round(peak_act),
        energy_mj=energy_pj * 1e-9 if profile.has_energy else None,
        fits_memory=not problems,
        memory_problems=tuple(problems),
        memory_overflow=max(uses) - 1.0 if uses else None,
    )


_WARNED: set[str] = set()


def fitted_elsewhere(profile: Profile, here: CpuInfo | None = None) -> str | None:
    """A one-line warning when ``profile`` describes this machine (a measured profile such as
    ``host``) but its numbers were fitted on another kind of CPU; None when they fit here.
    A kernel table fitted on an AVX-512 VNNI machine does not describe an AVX2 one."""
    fitted, here = profile.calibrated_on, here or host_cpu()
    if profile.latency_method != "measured" or fitted is None or fitted.same_kind(here):
        return None
    features = ", ".join(fitted.int8_features) or "none"
    return (f"warning: profile {profile.name!r} was calibrated on {fitted.model} ({features}), "
            f"this is {here.model} ({', '.join(here.int8_features) or 'none'}): its predicted "
            "latencies may be off here; recalibrate with `edgeshrink profile calibrate --out "
            "this-host.toml` and predict with `--profile this-host.toml`")


def predict_latency(model: onnx.ModelProto | Path | str, profile: Profile) -> Prediction:
    """Latency of the file as it will run on the profile's device (the search uses this too)."""
    warning = fitted_elsewhere(profile)
    if warning and profile.source not in _WARNED:
        _WARNED.add(profile.source)
        print(warning, file=sys.stderr)
    return predict_layers(analyse_graph(model, profile.fusion), profile)
