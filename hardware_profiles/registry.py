"""Profiles are TOML files: built-ins ship in ``profiles/``; a user may pass a path."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
_LATENCY_METHODS = ("measured",)
_DRIFT_CORRECTIONS = ("gauge", "none")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the field."""


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
    precisions: tuple[str, ...]
    measurement: Measurement = field(default_factory=Measurement)
    source: str = ""


def _builtin_dir() -> Any:
    return resources.files("edgeshrink.hardware_profiles").joinpath("profiles")


def list_profiles() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in _builtin_dir().iterdir()
                  if p.name.endswith(".toml"))


def _field(raw: dict[str, Any], key: str, kind: type, source: str) -> Any:
    if key not in raw:
        raise ProfileError(f"profile {source}: missing field '{key}'")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProfileError(
            f"profile {source}: field '{key}' must be {kind.__name__}, got {value!r}"
        )
    return value


def parse_profile(raw: dict[str, Any], source: str) -> Profile:
    version = _field(raw, "schema_version", int, source)
    if version != SCHEMA_VERSION:
        raise ProfileError(
            f"profile {source}: field 'schema_version' must be {SCHEMA_VERSION}, got {version}"
        )
    method = _field(raw, "latency_method", str, source)
    if method not in _LATENCY_METHODS:
        raise ProfileError(
            f"profile {source}: field 'latency_method' must be one of {_LATENCY_METHODS}, "
            f"got {method!r}"
        )
    m = raw.get("measurement", {})
    try:
        measurement = Measurement(**m)
    except TypeError as exc:
        raise ProfileError(f"profile {source}: bad field in 'measurement' ({exc})") from None
    if measurement.drift_correction not in _DRIFT_CORRECTIONS:
        raise ProfileError(
            f"profile {source}: field 'measurement.drift_correction' must be one of "
            f"{_DRIFT_CORRECTIONS}, got {measurement.drift_correction!r}"
        )
    if measurement.intra_op_threads < 1 or measurement.min_runs < 1:
        raise ProfileError(
            f"profile {source}: 'measurement.intra_op_threads' and 'min_runs' must be >= 1"
        )
    return Profile(
        name=_field(raw, "name", str, source),
        description=_field(raw, "description", str, source),
        kind=_field(raw, "kind", str, source),
        latency_method=method,
        precisions=tuple(_field(raw, "precisions", list, source)),
        measurement=measurement,
        source=source,
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
