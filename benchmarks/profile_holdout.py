"""Are the predicted profiles right on networks they were not fitted to?

For every profile with published figures (``hardware_profiles/published/*.toml``): build each
figure's network at its input size and precision (``published_networks``, cached), read it as
the profile's runtime would (``analyse_graph``), and

- leave one network out: fit the profile's unknowns (per precision a scale of its class
  efficiencies, and one per-layer overhead; ``calibrate.published_fit``) to the other networks'
  figures and predict the one left out; report, per precision, Spearman and the median absolute
  error of those predictions;
- fit to all figures: the numbers the profile should ship (scales of 1.000 and the shipped
  overhead mean the shipped file is that fit), and the shipped profile's own error.

Everything here is prediction from graphs, so the tables do not depend on this machine's CPU.

    nice -n 19 .venv/bin/python benchmarks/profile_holdout.py [--profile NAME ...]
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass

import numpy as np
from published_networks import onnx_file

from edgeshrink.hardware_profiles.calibrate.published_fit import (
    MIN_TARGET_FIGURES,
    Figure,
    Fit,
    Holdout,
    apply_fit,
    fit_profile,
    leave_one_out,
    list_published,
    load_published,
    max_scale,
    median_abs_error,
    network_terms,
    spearman,
)
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.latency_model import predict_layers
from edgeshrink.hardware_profiles.registry import OP_CLASSES, Profile, load_profile

TARGET = 0.20  # leave-one-network-out median absolute error, from MIN_TARGET_FIGURES figures


@dataclass(frozen=True)
class Row:
    profile: str
    precision: str
    figures: int
    holdouts: list[Holdout]
    checks: list[Holdout]  # figures outside what the model prices, predicted by the full fit
    shipped_ms: dict[Figure, float]  # each fitted figure as the shipped profile predicts it


@dataclass(frozen=True)
class Checked:
    rows: list[Row]
    fit: Fit  # to all figures: the numbers the profile should ship
    fitted: Profile


def check(name: str) -> Checked:
    published, shipped = load_published(name), load_profile(name)
    layers = {f: analyse_graph(onnx_file(f.network, f.resolution, f.precision), shipped.fusion)
              for f in published.figures}
    precisions = published.precisions()
    figs = [f for p in precisions for f in published.of(p)]
    terms = [network_terms(layers[f], shipped, precisions) for f in figs]
    tops = {p: max_scale(shipped, p) for p in precisions}
    fit = fit_profile(terms, [f.ms for f in figs], tops)
    fitted = apply_fit(shipped, fit, published.assume)
    holdouts = leave_one_out(terms, figs, tops, shipped.per_layer_us)
    rows = [Row(name, p, len(published.of(p)), [h for h in holdouts if h.figure.precision == p],
                [Holdout(f, predict_layers(layers[f], fitted).total_ms)
                 for f in published.checks(p)],
                {f: predict_layers(layers[f], shipped).total_ms for f in published.of(p)})
            for p in precisions]
    return Checked(rows, fit, fitted)


def _pct(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.0%}"


def _summary(profile: str, label: str, n: int, holdouts: list[Holdout], target: str) -> str:
    mdape = median_abs_error(holdouts)
    worst = max(holdouts, key=lambda h: abs(h.error), default=None)
    rho = spearman([h.figure.ms for h in holdouts], [h.predicted_ms for h in holdouts])
    return (f"| {profile} | {label} | {n} | {'n/a' if np.isnan(rho) else f'{rho:.2f}'} | "
            f"{_pct(mdape)} | {f'{worst.figure.network} {worst.error:+.0%}' if worst else '-'} "
            f"| {target} |")


def report(checked: list[Checked]) -> None:
    rows = [r for c in checked for r in c.rows]
    print("| profile | precision | figures | Spearman (held out) | median abs. error (held out) "
          "| worst held out | target (<= 20% from 5 figures) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mdape = median_abs_error(r.holdouts)
        target = (("met" if mdape <= TARGET else "MISSED") if r.figures >= MIN_TARGET_FIGURES
                  else f"n/a ({r.figures} figures)")
        print(_summary(r.profile, r.precision, r.figures, r.holdouts, target))
        if r.checks:
            print(_summary(r.profile, f"{r.precision}, checks not fitted", len(r.checks),
                           r.checks, "outside the model (see the figures file)"))
    print("\n| profile | network | input | precision | published ms | held-out prediction | error "
          "| shipped profile | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for h in r.holdouts:
            f, ms = h.figure, r.shipped_ms[h.figure]
            print(f"| {r.profile} | {f.network} | {f.resolution} | {f.precision} | {f.ms:g} | "
                  f"{h.predicted_ms:.2f} | {h.error:+.0%} | {ms:.2f} | {ms / f.ms - 1:+.0%} |")
        for h in r.checks:
            f = h.figure
            print(f"| {r.profile} | {f.network} (check, not fitted) | {f.resolution} | "
                  f"{f.precision} | {f.ms:g} | {h.predicted_ms:.2f} | {h.error:+.0%} | - | - |")
    print("\nFitted to all figures (scales 1.000 and the shipped per_layer_us: the shipped "
          "numbers):")
    for c in checked:
        print(f"  {c.rows[0].profile}: per_layer_us {c.fit.overhead_us:.3g}, in-sample RMS error "
              f"{c.fit.error:.1%}")
        for prec, scale in c.fit.scales.items():
            eff = ", ".join(f"{k} = {c.fitted.efficiency_for(k, prec):.3g}" for k in OP_CLASSES)
            print(f"    {prec}: scale {scale:.3f}; {eff}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", nargs="*", default=None,
                    help="profiles to check (default: every one with published figures)")
    args = ap.parse_args()
    names = args.profile or list_published()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's and quantizer's notices
        checked = [check(name) for name in names]
    report(checked)


if __name__ == "__main__":
    main()
