"""What ``edgeshrink profile ...`` prints: list, show, predict, calibrate and bundle, as plain
text.

Kept apart from the argument parser so the CLI stays thin and these stay testable; nothing here
imports torch, so ``profile predict`` and ``profile calibrate`` run on a device that lacks it
(``calibrate --runtime litert`` is handed its converter by the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from edgeshrink.hardware_profiles.latency_model import Prediction, predict_latency
from edgeshrink.hardware_profiles.registry import (
    Profile,
    ProfileError,
    list_profiles,
    load_profile,
)
from edgeshrink.hardware_profiles.runtimes import RUNTIMES

FORMATS = ("table", "json")


def _peaks(p: Profile) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in p.peak_gmacs.items())


def list_text() -> str:
    rows = [(n, load_profile(n)) for n in list_profiles()]
    width = max(len(n) for n, _ in rows)
    lines = [f"{'name':<{width}}  kind  latency    precisions        description"]
    for name, p in rows:
        lines.append(f"{name:<{width}}  {p.kind:<4}  {p.latency_method:<9}  "
                     f"{','.join(p.precisions):<16}  {p.description}")
    return "\n".join(lines)


CHECKED_FROM = 5  # published figures a precision needs before its held-out error means much


def _published_lines(p: Profile) -> list[str]:
    """Per precision: how many published device latencies the numbers were fitted to and the
    median error on each one left out of the fit; which precisions have too few to check."""
    pub = p.published
    assert pub is not None
    parts, few = [], []
    for prec in p.precisions:
        n, err = pub.figures.get(prec, 0), pub.holdout_error.get(prec)
        parts.append(f"{prec} {n or 'none'}" + (f" (each left out: median error {err:.0%})"
                                                 if n and err is not None else ""))
        if n < CHECKED_FROM:
            few.append(prec)
    lines = [f"  published device latencies fitted to: {'; '.join(parts)}"]
    if few:
        lines.append(f"    fewer than {CHECKED_FROM} for {', '.join(few)}: not checked on enough "
                     "networks outside the fit")
    if pub.note:
        lines.append(f"    {pub.note}")
    return lines


def show_text(name_or_path: str) -> str:
    p = load_profile(name_or_path)
    mem = [f"bandwidth {p.bandwidth_gbps:g} GB/s"]
    if p.ram_bytes:
        mem.append(f"RAM for activations {p.ram_bytes:,} B")
    if p.storage_bytes:
        mem.append(f"storage for weights {p.storage_bytes:,} B")
    overhead = f"{p.per_layer_us:g} us per layer, {p.per_inference_us:g} us per inference"
    if p.per_layer_us_by_precision:
        overhead += " (" + ", ".join(f"{k}: {v:g} us per layer"
                                     for k, v in p.per_layer_us_by_precision.items()) + ")"
    eff = ", ".join(f"{c} {v:g}" for c, v in p.efficiency.items())
    lines = [
        f"{p.name}: {p.description}",
        f"  file: {p.source}",
        f"  kind: {p.kind}; latency is {p.latency_method}"
        + (f" with {RUNTIMES[p.measurement.runtime].name}" if p.latency_method == "measured"
           else ""),
        f"  peak GMAC/s: {_peaks(p)}",
        f"  memory: {'; '.join(mem)}",
        f"  overhead: {overhead}",
        f"  efficiency (share of peak): {eff}",
        *(f"    {prec}: " + ", ".join(f"{c} {v:g}" for c, v in o.items())
          for prec, o in p.efficiency_overrides.items()),
        f"  sparsity: {p.sparsity_support}"
        + (f" (from {p.min_sparsity:.0%} zeros)" if p.sparsity_support == "unstructured" else ""),
    ]
    if p.kernels:
        lines.append(f"  kernel costs ({len(p.kernels)} kernels, channel vector "
                     f"{p.kernel_vector}; the roofline prices other layers):")
        lines += [f"    {key}: " + ", ".join(f"{t} {v:.3g}" for t, v in terms.items())
                  for key, terms in sorted(p.kernels.items())]
    if p.has_energy:
        lines.append(f"  energy: {p.pj_per_byte:g} pJ/byte; pJ/MAC "
                     + ", ".join(f"{k} {v:g}" for k, v in p.pj_per_mac.items()))
    if p.calibrated_on is not None:
        lines.append(f"  calibrated on: {p.calibrated_on.describe()}")
    if p.published is not None:
        lines += _published_lines(p)
    lines += ["  sources:", *(f"    {s}" for s in p.sources)]
    return "\n".join(lines)


def _load_model(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise ProfileError(f"model file {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends; the message is what counts
        raise ProfileError(f"{path} is not an ONNX model ({type(exc).__name__})") from None


def predict(model_path: Path, profile_name: str) -> Prediction:
    profile = load_profile(profile_name)
    model = _load_model(Path(model_path))
    try:
        return predict_latency(model, profile)
    except ProfileError:
        raise
    except Exception as exc:
        raise ProfileError(f"cannot analyse {model_path}: {exc}".splitlines()[0]) from None


def predict_text(model_path: Path, profile_name: str, fmt: str = "table") -> str:
    if fmt not in FORMATS:
        raise ProfileError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    pred = predict(model_path, profile_name)
    if fmt == "json":
        return json.dumps(pred.to_dict(), indent=2)
    lines = [f"{'#':>3}  {'layer':<28} {'class':<11} {'prec':<5} {'MACs':>12} {'bytes':>10} "
             f"{'bound':<7} {'ms':>9}"]
    for i, lt in enumerate(pred.layers):
        lines.append(f"{i:>3}  {lt.name[:28]:<28} {lt.op_class:<11} {lt.precision:<5} "
                     f"{lt.effective_macs:>12,} {lt.bytes:>10,} {lt.bound:<7} {lt.ms:>9.4f}")
    lines.append(f"total on {pred.profile}: {pred.total_ms:.4f} ms over {len(pred.layers)} "
                 f"layers; weights {pred.weight_bytes:,} B, peak activations "
                 f"{pred.peak_activation_bytes:,} B")
    if pred.energy_mj is not None:
        lines.append(f"energy: {pred.energy_mj:.4f} mJ per inference")
    lines.append("fits the device's memory" if pred.fits_memory
                 else "does NOT fit: " + "; ".join(pred.memory_problems))
    return "\n".join(lines)


def calibrate_command(out: Path, name: str | None, kind: str, precisions: str,
                      quick: bool, runtime: str = "onnxruntime",
                      build: Callable[..., list[Any]] | None = None) -> Profile:
    """Time the micro-benchmarks here, fit, write ``out``; print where each step stands.

    ``runtime`` times them (``runtimes.RUNTIMES``); ``build`` makes its files where they are
    not the ONNX micro-models (LiteRT's: the CLI passes ``evaluators.litert_micro``'s)."""
    from edgeshrink.core.vocabulary import PRECISIONS
    from edgeshrink.hardware_profiles.calibrate import (
        MICRO_BENCHMARKS,
        QUICK_BENCHMARKS,
        calibrate,
    )
    from edgeshrink.hardware_profiles.calibrate.write import check_out
    from edgeshrink.hardware_profiles.registry import KINDS

    out = Path(out)
    if out.suffix != ".toml":
        raise ProfileError(f"--out must name a .toml file, got {out}")
    if kind not in KINDS:
        raise ProfileError(f"--kind must be one of {list(KINDS)}, got {kind!r}")
    precs = tuple(p.strip() for p in precisions.split(",") if p.strip())
    runnable = ("fp32", "int8")  # what onnxruntime's CPU kernels run natively here
    bad = [p for p in precs if p not in runnable]
    if not precs or bad:
        raise ProfileError(f"--precisions: calibration can time {list(runnable)} here (of "
                           f"{list(PRECISIONS)}); got {precisions!r}")
    if runtime not in RUNTIMES:
        raise ProfileError(f"--runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if missing := RUNTIMES[runtime].missing(f"--runtime {runtime}"):
        raise ProfileError(missing)
    benches = QUICK_BENCHMARKS if quick else MICRO_BENCHMARKS
    out = check_out(out)
    print(f"timing {len(benches)} micro-benchmarks ({', '.join(precs)}; operators in chains "
          f"of 1 and 4) with {RUNTIMES[runtime].name} on this machine ...", flush=True)
    if build is not None:
        print(f"  converting each to {RUNTIMES[runtime].suffix} first (seconds per model) ...",
              flush=True)
    profile, fit = calibrate(out, name=name or out.stem, kind=kind, precisions=precs,
                             benchmarks=benches, progress=lambda line: print("  " + line,
                                                                             flush=True),
                             runtime=runtime, build=build)
    print(f"fitted {len(fit.kernels)} kernel costs: {fit.mape:.1%} mean absolute error on the "
          f"micro-benchmarks; wrote {out}")
    print(f"search for this device with: edgeshrink search --profile {out}")
    return profile


def bundle_command(out: Path, quick: bool) -> int:
    """Write the calibration zipapp for a device (``calibrate.bundle``); its size in bytes."""
    from edgeshrink.hardware_profiles.calibrate.bundle import write_bundle

    out = Path(out)
    size = write_bundle(out, quick, progress=lambda line: print(line, flush=True))
    flag = " --quick" if quick else ""
    print(f"wrote {out} ({size / 1e6:.1f} MB). On the device: pip install numpy onnxruntime, "
          f"then python {out.name} --out my-device.toml{flag}; copy my-device.toml back and "
          "search with --profile my-device.toml")
    return size
