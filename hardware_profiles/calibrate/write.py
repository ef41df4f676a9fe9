"""The fitted numbers as a schema-2 profile TOML, with the CPU they were timed on.

The document is built as a dict and written by ``tomli_w``, so names, descriptions and CPU
models with quotes, backslashes or non-ASCII characters stay valid TOML. TOML writers drop
comments, so what the old per-table comments said leads the file as a header.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from edgeshrink.core.atomic import atomic_write_text
from edgeshrink.core.errors import ProfileError
from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.hardware_profiles.calibrate.fit import (
    PATH_NOTES,
    Fit,
    KernelFit,
    fit_kernels,
    fit_roofline,
)
from edgeshrink.hardware_profiles.calibrate.timing import Sample
from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu
from edgeshrink.hardware_profiles.profile_terms import OP_CLASSES, PATH_FALLBACK
from edgeshrink.hardware_profiles.runtimes import RUNTIMES

SOURCE_FIT = ("[1] fitted to {runtime} micro-benchmarks timed on the device (conv, depthwise, "
              "pointwise, linear, elementwise, pooling in chains of 1 and 4 layers; blocks; small "
              "networks and networks sampled from the search space)")


def _g(value: float) -> float:
    """Six significant digits: what a profile needs, and readable."""
    return float(f"{value:.6g}")


def _header(fit: Fit, samples: int, kernels: KernelFit | None,
            paths: list[str]) -> list[str]:
    lines = [
        f"Calibrated by `edgeshrink profile calibrate` on {dt.date.today().isoformat()}: "
        f"{samples} micro-benchmark timings,",
        f"fitted with {fit.mape:.1%} mean absolute error on the micro-benchmarks themselves.",
        *(f"[efficiency.{path}]: {PATH_NOTES[path]}." for path in paths),
        "[layout]: channel block of the kernels, fitted; the runtime that was timed.",
        "[calibrated_on]: the CPU these timings come from (hardware_profiles.cpu).",
    ]
    if kernels:
        lines.append(f"[kernels]: cost per runtime kernel, fitted with {kernels.mape:.1%} mean "
                     "absolute error; layer_us in us, the rest in ns per MAC / pixel / channel "
                     "/ weight.")
    return [f"# {line}" for line in lines]


def _efficiency(fit: Fit, peak: dict[str, float], base: str) -> dict[str, Any]:
    """Shares of the peak: base precision per class, its kernel paths, other precisions' own."""

    def share(c: str, p: str, path: str = "aligned") -> float | None:
        v = fit.gmacs.get((c, p, path))
        return None if v is None else min(1.0, v / peak[p])

    def chained(c: str, p: str, path: str) -> float | None:
        return next((v for q in PATH_FALLBACK[path] if (v := share(c, p, q)) is not None), None)

    fallback = {c: share(c, base) for c in OP_CLASSES}
    known = [v for v in fallback.values() if v is not None]
    default = min(known) if known else 0.1
    table: dict[str, Any] = {c: _g(fallback[c] or default) for c in OP_CLASSES}
    base_paths = {path: {c: v for c in OP_CLASSES if (v := share(c, base, path)) is not None}
                  for path in ("unaligned", "generic")}
    table.update({path: {c: _g(v) for c, v in shares.items()}
                  for path, shares in base_paths.items() if shares})
    for p in peak:
        if p == base:
            continue
        own: dict[str, Any] = {c: _g(v) for c in OP_CLASSES if (v := share(c, p)) is not None}
        for path, shares in base_paths.items():
            # Every class the base table lists for this path needs this precision's own value
            # (down its fallback chain where it has no data), or the base value would leak.
            values = {c: _g(v) for c in OP_CLASSES
                      if (v := share(c, p, path) if c not in shares else chained(c, p, path))
                      is not None}
            if values:
                own[path] = values
        if own:
            table[p] = own
    return table


def profile_toml(fit: Fit, name: str, description: str, kind: str, samples: int,
                 gauge_ms: float | None, kernels: KernelFit | None = None,
                 cpu: CpuInfo | None = None, runtime: str = "onnxruntime") -> str:
    """The fitted numbers as a schema-2 profile: peak = best class, efficiency = share of it.

    ``cpu`` is the CPU the timings come from, this one unless given; ``runtime`` the one that
    timed them (``runtimes.RUNTIMES``), whose graph reading the profile then predicts with.
    """
    precisions = sorted({p for _, p, _ in fit.gmacs}, key=PRECISIONS.index)
    peak = {p: max(v for (c, q, _), v in fit.gmacs.items() if q == p) for p in precisions}
    base = "fp32" if "fp32" in peak else precisions[0]
    cpu = cpu or host_cpu()
    sources = [SOURCE_FIT.format(runtime=RUNTIMES[runtime].name)]
    if gauge_ms:
        sources.append(f"[2] timings drift-corrected against the edgeshrink gauge "
                       f"({gauge_ms:.4f} ms)")
    per_inference_us = kernels.per_inference_us if kernels else fit.per_inference_us
    efficiency = _efficiency(fit, peak, base)
    doc: dict[str, Any] = {
        "schema_version": 2, "name": name, "description": description, "kind": kind,
        "latency_method": "predicted", "sources": sources,
        "compute": {p: _g(peak[p]) for p in precisions},
        "memory": {"bandwidth_gbps": _g(fit.bandwidth_gbps)},
        "overhead": {"per_layer_us": _g(fit.per_layer_us.get(base, 0.0)),
                     "per_inference_us": _g(per_inference_us),
                     **{f"per_layer_us_{p}": _g(v) for p, v in fit.per_layer_us.items()
                        if p != base}},
        "efficiency": efficiency,
        "layout": {**{f"channel_block_{p}": b for p, b in fit.channel_block.items()},
                   "fusion": RUNTIMES[runtime].reading},
        "sparsity": {"support": "none"},
        "calibrated_on": {"cpu": cpu.model, "arch": cpu.arch,
                          "int8_features": list(cpu.int8_features)},
    }
    if kernels:
        doc["kernels"] = {"channel_vector": kernels.vector, **{
            key: {t: _g(v) for t, v in terms.items()}
            for key, terms in sorted(kernels.kernels.items())}}
    paths = [path for path in ("unaligned", "generic") if path in efficiency]
    return "\n".join(_header(fit, samples, kernels, paths)) + "\n" + tomli_w.dumps(doc)


def check_out(out: Path, suffix: str = ".toml") -> Path:
    """``--out`` before anything is timed (or bundled): a ``suffix`` file in a directory that
    takes writes."""
    out = Path(out)
    if out.suffix != suffix:
        raise ProfileError(f"--out must name a {suffix} file, got {out}")
    if out.is_dir():
        raise ProfileError(f"--out {out} is a directory; name a {suffix} file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(f".{out.stem}.probe")
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ProfileError(f"cannot write {out}: {exc.strerror}") from None
    return out


def fit_and_write(samples: list[Sample], out: Path, name: str, description: str | None,
                  kind: str, gauge_ms: float | None,
                  check: Callable[[str], object] | None = None,
                  runtime: str = "onnxruntime") -> KernelFit:
    """Fit the timings and replace ``out`` with the profile in one step; ``check(text)`` may
    refuse it first (the schema, where pydantic is installed)."""
    kernels = fit_kernels(samples)
    text = profile_toml(fit_roofline(samples), name,
                        description or f"{name}: calibrated with {RUNTIMES[runtime].name}",
                        kind, len(samples), gauge_ms, kernels, runtime=runtime)
    tomllib.loads(text)  # valid TOML at least, even where the schema cannot be checked
    if check:
        check(text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    return kernels
