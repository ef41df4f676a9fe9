"""The fitted numbers as a schema-2 profile TOML, with the CPU they were timed on."""

from __future__ import annotations

import datetime as dt
import json

from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.hardware_profiles.calibrate.catalogue import FUSION
from edgeshrink.hardware_profiles.calibrate.fit import PATH_NOTES, Fit, KernelFit
from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu
from edgeshrink.hardware_profiles.registry import (
    OP_CLASSES,
    PATH_FALLBACK,
)


def _cpu_lines(cpu: CpuInfo) -> list[str]:
    return [f"cpu = {json.dumps(cpu.model)}", f"arch = {json.dumps(cpu.arch)}",
            f"int8_features = {json.dumps(list(cpu.int8_features))}"]


def profile_toml(fit: Fit, name: str, description: str, kind: str, samples: int,
                 gauge_ms: float | None, kernels: KernelFit | None = None) -> str:
    """The fitted numbers as a schema-2 profile: peak = best class, efficiency = share of it."""
    precisions = sorted({p for _, p, _ in fit.gmacs}, key=PRECISIONS.index)
    peak = {p: max(v for (c, q, _), v in fit.gmacs.items() if q == p) for p in precisions}
    base = "fp32" if "fp32" in peak else precisions[0]

    def share(c: str, p: str, path: str = "aligned") -> float | None:
        v = fit.gmacs.get((c, p, path))
        return None if v is None else min(1.0, v / peak[p])

    def chained(c: str, p: str, path: str) -> float | None:
        return next((v for q in PATH_FALLBACK[path] if (v := share(c, p, q)) is not None), None)

    lines = [
        f"# Calibrated by `edgeshrink profile calibrate` on {dt.date.today().isoformat()}: "
        f"{samples} micro-benchmark timings,",
        f"# fitted with {fit.mape:.1%} mean absolute error on the micro-benchmarks themselves.",
        "schema_version = 2",
        f'name = "{name}"',
        f'description = "{description}"',
        f'kind = "{kind}"',
        'latency_method = "predicted"',
        "sources = [",
        '  "[1] fitted to onnxruntime micro-benchmarks timed on the device (conv, depthwise, '
        'pointwise, linear, elementwise, pooling in chains of 1 and 4 layers; blocks; small '
        'networks and networks sampled from the search space)"'
        + (f',\n  "[2] timings drift-corrected against the edgeshrink gauge ({gauge_ms:.4f} ms)"'
           if gauge_ms else ""),
        "]",
        "",
        "[compute]",
        *(f"{p} = {peak[p]:.6g}" for p in precisions),
        "",
        "[memory]",
        f"bandwidth_gbps = {fit.bandwidth_gbps:.6g}",
        "",
        "[overhead]",
        f"per_layer_us = {fit.per_layer_us.get(base, 0.0):.6g}",
        f"per_inference_us = "
        f"{(kernels.per_inference_us if kernels else fit.per_inference_us):.6g}",
        *(f"per_layer_us_{p} = {v:.6g}" for p, v in fit.per_layer_us.items() if p != base),
        "",
        "[efficiency]",
    ]
    fallback = {c: share(c, base) for c in OP_CLASSES}
    known = [v for v in fallback.values() if v is not None]
    default = min(known) if known else 0.1
    lines += [f"{c} = {(fallback[c] or default):.6g}" for c in OP_CLASSES]
    base_paths = {path: {c: v for c in OP_CLASSES if (v := share(c, base, path)) is not None}
                  for path in ("unaligned", "generic")}
    for path, shares in base_paths.items():
        if shares:
            lines += ["", f"[efficiency.{path}]  # {PATH_NOTES[path]}",
                      *(f"{c} = {v:.6g}" for c, v in shares.items())]
    for p in precisions:
        if p == base:
            continue
        overrides = {c: share(c, p) for c in OP_CLASSES if share(c, p) is not None}
        if overrides:
            lines += ["", f"[efficiency.{p}]", *(f"{c} = {v:.6g}" for c, v in overrides.items())]
        for path, shares in base_paths.items():
            # Every class the base table lists for this path needs this precision's own value
            # (down its fallback chain where it has no data), or the base value would leak.
            own = {c: v for c in OP_CLASSES
                   if (v := share(c, p, path) if c not in shares else chained(c, p, path))
                   is not None}
            if own:
                lines += ["", f"[efficiency.{p}.{path}]",
                          *(f"{c} = {v:.6g}" for c, v in own.items())]
    lines += ["", "[layout]  # channel block of the kernels, fitted; the runtime that was timed",
              *(f"channel_block_{p} = {b}" for p, b in fit.channel_block.items()),
              f'fusion = "{FUSION}"']
    lines += ["", "[sparsity]", 'support = "none"']
    lines += ["", "[calibrated_on]  # the CPU these timings come from (hardware_profiles.cpu)",
              *_cpu_lines(host_cpu())]
    if kernels:
        lines += ["", f"[kernels]  # cost per runtime kernel, fitted with {kernels.mape:.1%} "
                  "mean absolute error; layer_us in us, the rest in ns per MAC / pixel / channel "
                  "/ weight",
                  f"channel_vector = {kernels.vector}"]
        lines += [f'"{key}" = {{ ' + ", ".join(f"{t} = {v:.6g}" for t, v in terms.items()) + " }"
                  for key, terms in sorted(kernels.kernels.items())]
    return "\n".join(lines) + "\n"
