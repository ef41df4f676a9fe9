"""Profiles are TOML files: built-ins ship in ``profiles/``; a user may pass a path.

Schema (version 2), every number with its source in the file:

    schema_version = 2
    name, description, kind ("cpu" | "gpu" | "npu" | "mcu")
    latency_method = "measured" (time the file here, onnxruntime) | "predicted" (latency model)
    sources = ["[1] where a number came from", ...]
    [compute]      peak GMAC/s per precision the device runs: fp32, fp16, int8, int4
    [memory]       bandwidth_gbps; optional ram_bytes (peak activations), storage_bytes (weights)
    [overhead]     per_layer_us, per_inference_us; optional per_layer_us_<precision>
    [efficiency]   share of peak per operator class (conv, depthwise, pointwise, matmul,
                   elementwise, pooling); a sub-table per precision overrides some classes;
                   optional [efficiency.unaligned] / [efficiency.<precision>.unaligned]: shares
                   for layers whose input channels are off the channel block; likewise
                   [efficiency.generic]: layers whose weights are dequantized at run time
    [layout]       optional: channel_block (kernels pad channels to a multiple of it; default
                   1), channel_block_<precision> where a precision's kernels differ;
                   fusion = "qdq" (default: every QDQ pattern runs as an int8 kernel) or
                   "onnxruntime" (the device runs onnxruntime: read the graph after its rewrites,
                   unfused Quantize/Dequantize nodes cost time; see graph_layers) or
                   "onnxruntime_layout" (the same after this machine's layout rewrites too)
    [kernels]      optional, with fusion = "onnxruntime_layout": a linear cost per runtime
                   kernel, fitted by calibrate (kernel_costs): channel_vector = N, then
                   "<kernel> <class> <precision>" = {layer_us, mac_ns, mac_half_ns,
                   mac_single_ns, pixel_ns, channel_ns, weight_ns}, each >= 0; other layers
                   use the roofline
    [sparsity]     support = "none" | "2:4" | "unstructured"; min_sparsity for unstructured
    [energy]       optional: pj_per_byte and pj_per_mac.<precision>
    [measurement]  for "measured" profiles: how to time (threads, runs, drift correction)
    [calibrated_on] optional, written by calibrate: cpu (model name), arch, int8_features
                   (hardware_profiles.cpu): the machine its timings came from
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgeshrink.core.errors import ProfileError
from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.hardware_profiles.cpu import INT8_FEATURES, CpuInfo

SCHEMA_VERSION = 2
KINDS = ("cpu", "gpu", "npu", "mcu")
LATENCY_METHODS = ("measured", "predicted")
OP_CLASSES = ("conv", "depthwise", "pointwise", "matmul", "elementwise", "pooling")
SPARSITY_SUPPORT = ("none", "2:4", "unstructured")
_DRIFT_CORRECTIONS = ("gauge", "none")
# How a runtime fuses QDQ graphs (and lays data out); see graph_layers.
FUSIONS = ("qdq", "onnxruntime", "onnxruntime_layout")
# Kernel paths (graph_layers.Layer.path) and what each falls back to without its own number.
PATH_FALLBACK: dict[str, tuple[str, ...]] = {
    "aligned": ("aligned",), "unaligned": ("unaligned", "aligned"),
    "generic": ("generic", "unaligned", "aligned")}
PATHS = ("generic", "unaligned")  # the paths off the blocked fast path: their own tables
# A [kernels] entry's terms (kernel_costs): "layer_us" in microseconds, the rest in ns per unit.
KERNEL_TERMS = ("layer_us", "mac_ns", "mac_half_ns", "mac_single_ns", "pixel_ns", "channel_ns",
                "weight_ns")


@dataclass(frozen=True)
class Measurement:
    intra_op_threads: int = 1
    warmup_runs: int = 30
    min_runs: int = 200
    min_seconds: float = 0.3
    # "gauge": time a fixed reference network between runs and divide the host's drift out.
    drift_correction: str = "gauge"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    kind: str
    latency_method: str
    peak_gmacs: dict[str, float]  # by precision; its keys are the precisions the device runs
    bandwidth_gbps: float
    per_layer_us: float
    per_inference_us: float
    efficiency: dict[str, float]  # by operator class
    per_layer_us_by_precision: dict[str, float] = field(default_factory=dict)
    efficiency_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    # Layers off the blocked fast path, by path ("unaligned", "generic"), then by precision
    # ("" = any): see _efficiency.
    path_efficiency: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    sparsity_support: str = "none"
    min_sparsity: float = 0.0
    ram_bytes: int | None = None
    storage_bytes: int | None = None
    pj_per_mac: dict[str, float] = field(default_factory=dict)
    pj_per_byte: float | None = None
    sources: tuple[str, ...] = ()
    channel_block: dict[str, int] = field(default_factory=dict)  # by precision; default 1
    fusion: str = "qdq"  # how the device's runtime fuses QDQ graphs (graph_layers.FUSIONS)
    # Per-kernel costs by "<kernel> <class> <precision>" (kernel_costs), and the channel vector
    # their MAC terms split channels by; empty: the roofline prices every layer.
    kernels: dict[str, dict[str, float]] = field(default_factory=dict)
    kernel_vector: int = 16
    measurement: Measurement = field(default_factory=Measurement)
    source: str = ""
    calibrated_on: CpuInfo | None = None  # the CPU its timings were taken on, where recorded

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.peak_gmacs)

    def block_for(self, precision: str) -> int:
        return self.channel_block.get(precision, 1)

    def layer_overhead_us(self, precision: str) -> float:
        return self.per_layer_us_by_precision.get(precision, self.per_layer_us)

    def efficiency_for(self, op_class: str, precision: str, path: str = "aligned") -> float:
        """Share of peak for a layer on kernel ``path`` (graph_layers.Layer.path); a generic
        kernel falls back to the unaligned share, that to the aligned one."""
        for kind in PATH_FALLBACK.get(path, ("aligned",))[:-1]:  # "aligned": the tables below
            for key in (precision, ""):
                share = self.path_efficiency.get(kind, {}).get(key, {}).get(op_class)
                if share is not None:
                    return share
        return self.efficiency_overrides.get(precision, {}).get(op_class,
                                                                 self.efficiency[op_class])

    @property
    def has_energy(self) -> bool:
        return bool(self.pj_per_mac) and self.pj_per_byte is not None


def _builtin_dir() -> Any:
    return resources.files("edgeshrink.hardware_profiles").joinpath("profiles")


def list_profiles() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in _builtin_dir().iterdir()
                  if p.name.endswith(".toml"))


def _get(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], source: str,
         where: str = "", default: Any = ...) -> Any:
    label = f"{where}.{key}" if where else key
    if key not in raw:
        if default is not ...:
            return default
        raise ProfileError(f"profile {source}: missing field '{label}'")
    value = raw[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ProfileError(f"profile {source}: field '{label}' must be {names}, got {value!r}")
    return value


def _positive(value: float, label: str, source: str) -> float:
    if not value > 0:
        raise ProfileError(f"profile {source}: field '{label}' must be positive, got {value}")
    return float(value)


def _choice(value: str, allowed: tuple[str, ...], label: str, source: str) -> str:
    if value not in allowed:
        raise ProfileError(
            f"profile {source}: field '{label}' must be one of {list(allowed)}, got {value!r}"
        )
    return value


def _table(raw: dict[str, Any], key: str, source: str, required: bool = True) -> dict[str, Any]:
    if key not in raw and not required:
        return {}
    return _get(raw, key, dict, source)


def _class_shares(table: dict[str, Any], where: str, source: str) -> dict[str, float]:
    out = {}
    for cls, v in table.items():
        _choice(cls, OP_CLASSES, f"{where}.{cls}", source)
        out[cls] = _share(v, f"{where}.{cls}", source)
    return out


def _efficiency(raw: dict[str, Any], source: str, precisions: tuple[str, ...]):
    """Base shares, per-precision overrides and shares for layers off the blocked fast path.

    ``paths[path][precision]`` ("" for every precision): "unaligned" layers have input channels
    off the profile's channel block; "generic" layers read weights dequantized at run time,
    which kernels that pre-pack constant weights cannot take.
    """
    table = _table(raw, "efficiency", source)
    base: dict[str, float] = {}
    overrides: dict[str, dict[str, float]] = {}
    paths: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in table.items():
        if key in PATHS:
            paths.setdefault(key, {})[""] = _class_shares(
                _get(table, key, dict, source, "efficiency"), f"efficiency.{key}", source)
        elif isinstance(value, dict):
            _choice(key, precisions, f"efficiency.{key}", source)
            inner = dict(value)
            for path in PATHS:
                if isinstance(inner.get(path), dict):
                    paths.setdefault(path, {})[key] = _class_shares(
                        inner.pop(path), f"efficiency.{key}.{path}", source)
            overrides[key] = _class_shares(inner, f"efficiency.{key}", source)
        else:
            _choice(key, OP_CLASSES, f"efficiency.{key}", source)
            base[key] = _share(value, f"efficiency.{key}", source)
    missing = [c for c in OP_CLASSES if c not in base]
    if missing:
        raise ProfileError(f"profile {source}: missing field 'efficiency.{missing[0]}'")
    return base, overrides, paths


def _kernels(raw: dict[str, Any], source: str, fusion: str,
             precisions: tuple[str, ...]) -> tuple[dict[str, dict[str, float]], int]:
    table = dict(_table(raw, "kernels", source, required=False))
    if table and fusion != "onnxruntime_layout":
        raise ProfileError(f"profile {source}: field 'kernels' needs layout.fusion = "
                           f'"onnxruntime_layout" (kernel names come from that reading), '
                           f"got {fusion!r}")
    vector = table.pop("channel_vector", 16)
    if isinstance(vector, bool) or not isinstance(vector, int) or not 1 <= vector <= 256:
        raise ProfileError(f"profile {source}: field 'kernels.channel_vector' must be an "
                           f"integer in [1, 256], got {vector!r}")
    kernels: dict[str, dict[str, float]] = {}
    for key, terms in table.items():
        label = f'kernels."{key}"'
        parts = key.split(" ")
        if len(parts) != 3 or not parts[0]:
            raise ProfileError(f"profile {source}: field {label} must be named "
                               f'"<kernel> <class> <precision>", got {key!r}')
        _choice(parts[1], OP_CLASSES, f"{label} (class)", source)
        _choice(parts[2], precisions, f"{label} (precision)", source)
        if not isinstance(terms, dict):
            raise ProfileError(f"profile {source}: field {label} must be a table of costs, "
                               f"got {terms!r}")
        for term, value in terms.items():
            _choice(term, KERNEL_TERMS, f"{label}.{term}", source)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ProfileError(f"profile {source}: field {label}.{term} must be a "
                                   f"number >= 0, got {value!r}")
        kernels[key] = {term: float(v) for term, v in terms.items()}
    return kernels, vector


def _share(value: Any, label: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ProfileError(f"profile {source}: field '{label}' must be a share in (0, 1], "
                           f"got {value!r}")
    return float(value)


def _calibrated_on(raw: dict[str, Any], source: str) -> CpuInfo | None:
    table = _table(raw, "calibrated_on", source, required=False)
    if not table:
        return None
    unknown = set(table) - {"cpu", "arch", "int8_features"}
    if unknown:
        raise ProfileError(f"profile {source}: unknown field 'calibrated_on.{sorted(unknown)[0]}'")
    features = _get(table, "int8_features", list, source, "calibrated_on", [])
    for f in features:
        _choice(f, tuple(INT8_FEATURES.values()), "calibrated_on.int8_features", source)
    return CpuInfo(_get(table, "cpu", str, source, "calibrated_on"),
                   _get(table, "arch", str, source, "calibrated_on"), tuple(features))


def parse_profile(raw: dict[str, Any], source: str) -> Profile:
    version = _get(raw, "schema_version", int, source)
    if version != SCHEMA_VERSION:
        raise ProfileError(
            f"profile {source}: field 'schema_version' must be {SCHEMA_VERSION}, got {version}"
        )
    num = (int, float)
    compute = _table(raw, "compute", source)
    if not compute:
        raise ProfileError(f"profile {source}: field 'compute' must name at least one precision")
    peak = {_choice(p, PRECISIONS, f"compute.{p}", source):
            _positive(_get(compute, p, num, source, "compute"), f"compute.{p}", source)
            for p in compute}
    memory = _table(raw, "memory", source)
    overhead = _table(raw, "overhead", source)
    sparsity = _table(raw, "sparsity", source, required=False)
    energy = _table(raw, "energy", source, required=False)
    layout = _table(raw, "layout", source, required=False)
    blocks: dict[str, int] = {}
    fusion = _choice(layout.get("fusion", "qdq"), FUSIONS, "layout.fusion", source)
    for key, value in layout.items():
        if key == "fusion":
            continue
        prec = key[len("channel_block_"):] if key.startswith("channel_block_") else None
        if key != "channel_block" and prec is None:
            raise ProfileError(f"profile {source}: unknown field 'layout.{key}'")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
            raise ProfileError(f"profile {source}: field 'layout.{key}' must be an integer "
                               f"in [1, 256], got {value!r}")
        if prec is not None:
            _choice(prec, tuple(peak), f"layout.{key}", source)
            blocks[prec] = value
    if "channel_block" in layout:
        blocks = {p: blocks.get(p, layout["channel_block"]) for p in peak}
    efficiency, overrides, paths = _efficiency(raw, source, tuple(peak))
    kernels, kernel_vector = _kernels(raw, source, fusion, tuple(peak))
    ram = _get(memory, "ram_bytes", int, source, "memory", None)
    storage = _get(memory, "storage_bytes", int, source, "memory", None)
    pj_mac = _get(energy, "pj_per_mac", dict, source, "energy", {})
    m = _table(raw, "measurement", source, required=False)
    try:
        measurement = Measurement(**m)
    except TypeError as exc:
        raise ProfileError(f"profile {source}: bad field in 'measurement' ({exc})") from None
    for name, default in vars(Measurement()).items():  # TOML gives any type; name the field
        value = getattr(measurement, name)
        kind = (int, float) if isinstance(default, float) else type(default)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ProfileError(f"profile {source}: field 'measurement.{name}' must be "
                               f"{type(default).__name__}, got {value!r}")
    _choice(measurement.drift_correction, _DRIFT_CORRECTIONS, "measurement.drift_correction",
            source)
    if measurement.intra_op_threads < 1 or measurement.min_runs < 1:
        raise ProfileError(
            f"profile {source}: 'measurement.intra_op_threads' and 'min_runs' must be >= 1"
        )
    sources = _get(raw, "sources", list, source)
    return Profile(
        name=_get(raw, "name", str, source),
        description=_get(raw, "description", str, source),
        kind=_choice(_get(raw, "kind", str, source), KINDS, "kind", source),
        latency_method=_choice(_get(raw, "latency_method", str, source), LATENCY_METHODS,
                               "latency_method", source),
        peak_gmacs=peak,
        bandwidth_gbps=_positive(_get(memory, "bandwidth_gbps", num, source, "memory"),
                                 "memory.bandwidth_gbps", source),
        per_layer_us=float(_get(overhead, "per_layer_us", num, source, "overhead")),
        per_inference_us=float(_get(overhead, "per_inference_us", num, source, "overhead")),
        per_layer_us_by_precision={
            _choice(k[len("per_layer_us_"):], tuple(peak), f"overhead.{k}", source):
            float(_get(overhead, k, num, source, "overhead"))
            for k in overhead if k.startswith("per_layer_us_")},
        efficiency=efficiency,
        efficiency_overrides=overrides,
        path_efficiency=paths,
        sparsity_support=_choice(_get(sparsity, "support", str, source, "sparsity", "none"),
                                 SPARSITY_SUPPORT, "sparsity.support", source),
        min_sparsity=float(_get(sparsity, "min_sparsity", num, source, "sparsity", 0.0)),
        ram_bytes=None if ram is None else int(_positive(ram, "memory.ram_bytes", source)),
        storage_bytes=None if storage is None else int(
            _positive(storage, "memory.storage_bytes", source)),
        pj_per_mac={_choice(p, PRECISIONS, f"energy.pj_per_mac.{p}", source):
                    _positive(_get(pj_mac, p, num, source, "energy.pj_per_mac"),
                              f"energy.pj_per_mac.{p}", source) for p in pj_mac},
        pj_per_byte=_get(energy, "pj_per_byte", num, source, "energy", None),
        sources=tuple(str(s) for s in sources),
        channel_block=blocks,
        fusion=fusion,
        kernels=kernels,
        kernel_vector=kernel_vector,
        measurement=measurement,
        source=source,
        calibrated_on=_calibrated_on(raw, source),
    )


def load_profile(name_or_path: str) -> Profile:
    """Load a built-in profile by name, or a profile file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, source = path.read_text(), str(path)
    else:
        builtin = _builtin_dir().joinpath(f"{name_or_path}.toml")
        if not builtin.is_file():
            raise ProfileError(
                f"unknown profile {name_or_path!r}; built-in profiles: {', '.join(list_profiles())}"
                " (or pass a path to a .toml profile file)"
            )
        text, source = builtin.read_text(), f"{name_or_path}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {source}: not valid TOML ({exc})") from None
    return parse_profile(raw, source)
