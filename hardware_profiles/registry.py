"""Profiles are TOML files: built-ins ship in ``profiles/``; a user may pass a path.

The format is declared in ``profile_schema`` (pydantic models, documented there). This module
reads a file, words the first problem pydantic finds as one line that names the file and the
field (a ProfileError), and turns the checked tables into the ``Profile`` the latency model reads.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from edgeshrink.core.errors import ProfileError
from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.hardware_profiles.cpu import CpuInfo
from edgeshrink.hardware_profiles.profile_schema import (
    FUSIONS,
    KERNEL_TERMS,
    KINDS,
    LATENCY_METHODS,
    OP_CLASSES,
    SCHEMA_VERSION,
    SPARSITY_SUPPORT,
    Measurement,
    ProfileFile,
)
from edgeshrink.hardware_profiles.profile_terms import PATH_FALLBACK, PATHS

__all__ = ["FUSIONS", "KERNEL_TERMS", "KINDS", "LATENCY_METHODS", "OP_CLASSES", "PATH_FALLBACK",
           "PATHS", "SCHEMA_VERSION", "SPARSITY_SUPPORT", "Measurement", "Profile", "ProfileError",
           "Published", "list_profiles", "load_profile", "parse_profile"]


@dataclass(frozen=True)
class Published:
    """How a predicted profile's numbers were checked against the device (``[published]``)."""

    figures: dict[str, int]
    holdout_error: dict[str, float]
    note: str = ""


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
    # Published whole-network latencies its numbers were fitted to, by precision, and the median
    # error predicting each one left out ([published]); None where the file has no such table.
    published: Published | None = None

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


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML keys that need no quotes
_TYPE_NAMES = {"int_type": "int", "float_type": "int or float", "string_type": "str",
               "list_type": "list", "dict_type": "dict", "model_type": "dict"}


def _field(loc: tuple[str | int, ...]) -> str:
    label = ""
    for part in loc:
        if isinstance(part, int):
            label += f"[{part}]"
        elif part != "[key]":  # a dict key's own error: the key is the part before
            label += ("." if label else "") + (part if _BARE_KEY.fullmatch(part) else f'"{part}"')
    return label


def _known(loc: tuple[str | int, ...]) -> str:
    """The keys the table at ``loc`` takes: said with an unknown one, as a typo's fix."""
    table: Any = ProfileFile
    for part in loc:
        annotation = table.model_fields[part].annotation
        table = next(t for t in (annotation, *get_args(annotation)) if hasattr(t, "model_fields"))
    return ", ".join(table.model_fields)


def _message(error: ErrorDetails) -> str:
    """One pydantic error as the CLI's one line: the field path, what is wrong, the value found."""
    kind, ctx, got = error["type"], error.get("ctx", {}), error["input"]
    label = _field(error["loc"])
    if kind == "profile":
        return ctx["text"]
    if kind == "missing":
        return f"missing field '{label}'"
    if kind == "extra_forbidden":
        return f"unknown field '{label}' (known: {_known(error['loc'][:-1])})"
    if kind == "profile_value":
        problem = ctx["text"]
    elif kind in _TYPE_NAMES:
        problem = f"must be {_TYPE_NAMES[kind]}, got {got!r}"
    elif kind == "literal_error":  # expected: "'a', 'b' or 'c'"
        problem = f"must be one of [{ctx['expected'].replace(' or ', ', ')}], got {got!r}"
    elif kind == "greater_than" and ctx["gt"] == 0:
        problem = f"must be positive, got {got}"
    elif kind == "greater_than_equal":
        problem = f"must be >= {ctx['ge']:g}, got {got!r}"
    else:  # a check added to the schema without words here: pydantic's own
        problem = f"is wrong: {error['msg']}, got {got!r}"
    return f"field '{label}' {problem}"


def _efficiency(file: ProfileFile) -> tuple[dict[str, dict[str, float]],
                                            dict[str, dict[str, dict[str, float]]]]:
    """Per-precision overrides, and shares for layers off the blocked fast path.

    ``paths[path][precision]`` ("" for every precision): "unaligned" layers have input channels
    off the profile's channel block; "generic" layers read weights dequantized at run time,
    which kernels that pre-pack constant weights cannot take.
    """
    eff = file.efficiency
    overrides: dict[str, dict[str, float]] = {}
    paths: dict[str, dict[str, dict[str, float]]] = {}
    for path in PATHS:
        if (shares := getattr(eff, path)) is not None:
            paths.setdefault(path, {})[""] = shares.given()
    for precision in PRECISIONS:
        if (table := getattr(eff, precision)) is None:
            continue
        for path in PATHS:
            if (shares := getattr(table, path)) is not None:
                paths.setdefault(path, {})[precision] = shares.given()
        overrides[precision] = table.given()
    return overrides, paths


def parse_profile(raw: dict[str, Any], source: str) -> Profile:
    """Check a parsed profile file (ProfileError names the file and field) and build it."""
    try:
        file = ProfileFile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"profile {source}: {_message(exc.errors()[0])}") from None
    runs = tuple(file.compute)
    layout, overhead, energy = file.layout, file.overhead, file.energy
    blocks = {p: b for p in runs if (b := getattr(layout, f"channel_block_{p}")) is not None}
    if layout.channel_block is not None:
        blocks = {p: blocks.get(p, layout.channel_block) for p in runs}
    overrides, paths = _efficiency(file)
    kernels = file.kernels
    cal = file.calibrated_on
    return Profile(
        name=file.name,
        description=file.description,
        kind=file.kind,
        latency_method=file.latency_method,
        peak_gmacs=dict(file.compute),
        bandwidth_gbps=file.memory.bandwidth_gbps,
        per_layer_us=overhead.per_layer_us,
        per_inference_us=overhead.per_inference_us,
        per_layer_us_by_precision={
            p: us for p in runs if (us := getattr(overhead, f"per_layer_us_{p}")) is not None},
        efficiency=file.efficiency.given(),
        efficiency_overrides=overrides,
        path_efficiency=paths,
        sparsity_support=file.sparsity.support,
        min_sparsity=file.sparsity.min_sparsity,
        ram_bytes=file.memory.ram_bytes,
        storage_bytes=file.memory.storage_bytes,
        pj_per_mac=dict(energy.pj_per_mac),
        pj_per_byte=energy.pj_per_byte,
        sources=tuple(str(s) for s in file.sources),
        channel_block=blocks,
        fusion=layout.fusion,
        kernels={key: dict(terms) for key, terms in (kernels.model_extra or {}).items()},
        kernel_vector=kernels.channel_vector,
        measurement=Measurement(**file.measurement.model_dump()),
        source=source,
        calibrated_on=None if cal is None else CpuInfo(cal.cpu, cal.arch,
                                                       tuple(cal.int8_features)),
        published=None if (pub := file.published) is None else Published(
            dict(pub.figures), dict(pub.holdout_error), pub.note),
    )


def load_profile(name_or_path: str) -> Profile:
    """Load a built-in profile by name, or a profile file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        builtin = _builtin_dir().joinpath(f"{name_or_path}.toml")
        if not builtin.is_file():
            raise ProfileError(
                f"unknown profile {name_or_path!r}; built-in profiles: {', '.join(list_profiles())}"
                " (or pass a path to a .toml profile file)"
            )
        text, source = builtin.read_text(encoding="utf-8"), f"{name_or_path}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {source}: not valid TOML ({exc})") from None
    return parse_profile(raw, source)
