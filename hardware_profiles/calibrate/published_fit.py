"""Fit a predicted profile to published whole-network latencies, and check it on networks it was
not fitted to.

``hardware_profiles/published/<profile>.toml`` lists latencies measured on the profile's device
(network, input size, precision, ms, source). The profile keeps its relative class efficiencies
(conv : depthwise : ...); fitted are a scale of them per precision and one per-layer overhead
for the device's runtime, shared by its precisions: published figures are whole networks of
224x224-class inputs, where per-precision overheads trade off against the scales and the data
cannot tell them apart, while a search's small networks hinge on the overhead. Least squares on
relative error, so a 5 ms and a 500 ms network count alike. The roofline's ``max`` makes a scale
nonlinear; holding each layer to its side of the roofline makes it linear, so the fit
alternates exact linear solves with reassigning the sides, then polishes by coordinate descent.
Leave one network out refits without that network's figures and predicts them: the error on
networks the numbers never saw, which is what a profile's users meet.

Only numpy and the latency model: the graphs come in as analysed layers.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.hardware_profiles.calibrate.fit import nnls
from edgeshrink.hardware_profiles.graph_layers import Layer
from edgeshrink.hardware_profiles.latency_model import predict_layers
from edgeshrink.hardware_profiles.registry import OP_CLASSES, Profile, ProfileError

HUGE = 1e30  # a bandwidth or peak that makes one side of the roofline vanish
MIN_TARGET_FIGURES = 5  # the leave-one-out error target applies from this many figures


@dataclass(frozen=True)
class Figure:
    network: str
    resolution: int
    precision: str
    ms: float
    source: str
    # False: kept as a check of a network the latency model cannot price (the file says why),
    # predicted by the fit to the others but never fitted to.
    fit: bool = True


@dataclass(frozen=True)
class PublishedSet:
    """One profile's published figures: what its numbers are fitted to and checked on."""

    profile: str
    device: str
    figures: tuple[Figure, ...]
    sources: dict[str, str]
    # A precision without figures -> the fitted precision whose scale it takes.
    assume: dict[str, str] = field(default_factory=dict)

    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if self.of(p)]

    def of(self, precision: str) -> list[Figure]:
        """The figures ``precision``'s numbers are fitted to."""
        return [f for f in self.figures if f.precision == precision and f.fit]

    def checks(self, precision: str) -> list[Figure]:
        """The figures only checked, outside what the latency model prices."""
        return [f for f in self.figures if f.precision == precision and not f.fit]


def parse_published(raw: dict[str, Any], source: str) -> PublishedSet:
    """Check one published-figures table; an error names the file and the entry."""
    def fail(what: str) -> ProfileError:
        return ProfileError(f"published figures {source}: {what}")

    sources = raw.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise fail("[sources] must map each source name to its citation (figures go above it)")
    if not raw.get("figures"):
        raise fail("no figures (a top-level `figures = [...]` list, above [sources])")
    figures = []
    for i, entry in enumerate(raw["figures"]):
        try:
            fig = Figure(str(entry["network"]), int(entry["input"]), str(entry["precision"]),
                         float(entry["ms"]), str(entry["source"]), bool(entry.get("fit", True)))
        except KeyError as exc:
            raise fail(f"figures[{i}] lacks {exc.args[0]!r}") from None
        if fig.precision not in PRECISIONS or fig.ms <= 0 or fig.source not in sources:
            raise fail(f"figures[{i}] needs a precision in {list(PRECISIONS)}, ms > 0 and a "
                       f"source named in [sources], got {entry}")
        figures.append(fig)
    keys = [(f.network, f.resolution, f.precision) for f in figures]
    if len(set(keys)) != len(keys):
        raise fail("a network appears twice at one input size and precision")
    assume = dict(raw.get("assume", {}))
    if "profile" not in raw:
        raise fail("no `profile = NAME`: which profile the figures are for")
    return PublishedSet(str(raw["profile"]), str(raw.get("device", "")), tuple(figures),
                        dict(sources), assume)


def published_dir() -> Any:
    return resources.files("edgeshrink.hardware_profiles").joinpath("published")


def list_published() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in published_dir().iterdir()
                  if p.name.endswith(".toml"))


def load_published(name_or_path: str) -> PublishedSet:
    """A built-in profile's figures by profile name, or a figures file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        text, source = published_dir().joinpath(f"{name_or_path}.toml").read_text(
            encoding="utf-8"), f"{name_or_path}.toml"
    return parse_published(tomllib.loads(text), source)


@dataclass(frozen=True)
class Terms:
    """One network's predicted latency as a function of the unknowns: a scale per fitted
    precision and one per-layer overhead."""

    compute_ms: dict[str, np.ndarray]  # per layer, by fitted precision, at the current shares
    memory_ms: dict[str, np.ndarray]
    fixed_ms: float  # per-inference overhead and every layer at a precision not fitted

    @property
    def layers(self) -> int:
        return sum(len(c) for c in self.compute_ms.values())

    def ms(self, scales: Mapping[str, float], overhead_us: float) -> float:
        """Latency with each precision's efficiencies times its scale (1: as they are) and every
        fitted layer's overhead ``overhead_us``: the sum ``latency_model.predict_layers`` makes."""
        total = self.fixed_ms + self.layers * overhead_us / 1e3
        for prec, compute in self.compute_ms.items():
            scale = scales.get(prec, 1.0)
            total += float(np.maximum(compute / scale, self.memory_ms[prec]).sum())
        return total


def network_terms(layers: list[Layer], profile: Profile, precisions: Collection[str]) -> Terms:
    """Split ``layers`` into the roofline terms of the fitted ``precisions`` and the rest."""
    if profile.kernels:
        raise ProfileError(f"profile {profile.name!r} prices kernels from a table: fit it with "
                           "`edgeshrink profile calibrate`, not to published figures")
    quiet = {"per_layer_us": 0.0, "per_layer_us_by_precision": {}, "per_inference_us": 0.0}
    only_compute = replace(profile, bandwidth_gbps=HUGE, **quiet)
    only_memory = replace(profile, peak_gmacs=dict.fromkeys(profile.peak_gmacs, HUGE), **quiet)
    compute, memory = {}, {}
    for prec in precisions:
        mine = [la for la in layers if la.precision == prec]
        compute[prec] = np.array([t.ms for t in predict_layers(mine, only_compute).layers])
        memory[prec] = np.array([t.ms for t in predict_layers(mine, only_memory).layers])
    rest = predict_layers([la for la in layers if la.precision not in precisions], profile)
    return Terms(compute, memory, rest.total_ms)


def max_scale(profile: Profile, precision: str) -> float:
    """The largest scale that keeps every share of peak within 1."""
    shares = [profile.efficiency_for(c, precision, path) for c in OP_CLASSES
              for path in ("aligned", "unaligned", "generic")]
    return 1.0 / max(shares)


@dataclass(frozen=True)
class Fit:
    scales: dict[str, float]  # each fitted precision's efficiencies times this
    overhead_us: float  # the per-layer overhead, one for the device's runtime
    error: float  # root mean squared relative error on the figures it was fitted to


def _error(terms: Sequence[Terms], y: np.ndarray, scales: Mapping[str, float],
           overhead: float) -> float:
    pred = np.array([t.ms(scales, overhead) for t in terms])
    return float(np.sqrt(np.mean(((pred - y) / y) ** 2)))


def _best_overhead(terms: Sequence[Terms], y: np.ndarray, scales: Mapping[str, float]) -> float:
    """The non-negative overhead minimising squared relative error: linear, so closed form."""
    base = np.array([t.ms(scales, 0.0) for t in terms])
    n = np.array([t.layers / 1e3 for t in terms]) / y  # relative ms per us of overhead
    return max(0.0, float(n @ ((y - base) / y) / (n @ n))) if n @ n > 0 else 0.0


def _search(loss: Callable[[float], float], top: float) -> float:
    """The minimiser of ``loss`` over (0, top], on a log grid refined by golden sections."""
    grid = np.linspace(np.log(top) - np.log(1e5), np.log(top), 121)
    i = int(np.argmin([loss(float(np.exp(g))) for g in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if loss(float(np.exp(a))) <= loss(float(np.exp(b))):
            hi = b
        else:
            lo = a
    return float(np.exp(min((lo + hi) / 2, grid[i], key=lambda g: loss(float(np.exp(g))))))


def _linear_step(terms: Sequence[Terms], y: np.ndarray, scales: Mapping[str, float],
                 tops: Mapping[str, float], fixed_overhead: float | None) -> dict[str, float]:
    """With every layer held to the side of the roofline it takes at ``scales``, latency is
    linear in 1/scale and the overhead: the exact non-negative least-squares step."""
    precs = list(tops)
    rows, rhs = [], []
    for t, target in zip(terms, y, strict=True):
        row, const = [], t.fixed_ms
        for p in precs:
            c, m = t.compute_ms[p], t.memory_ms[p]
            bound = c / scales[p] >= m
            row.append(c[bound].sum())  # the coefficient of 1 / scale
            const += m[~bound].sum()
        if fixed_overhead is None:
            row.append(t.layers / 1e3)
        else:
            const += t.layers * fixed_overhead / 1e3
        rows.append(row)
        rhs.append(target - const)
    a, b = np.array(rows) / y[:, None], np.array(rhs) / y
    lower = np.array([1 / tops[p] for p in precs] + [0.0] * (fixed_overhead is None))
    x = nnls(a, b - a @ lower) + lower  # 1 / scale >= 1 / top: no share of peak past 1
    return {p: 1 / x[i] for i, p in enumerate(precs)}


def fit_profile(terms: Sequence[Terms], targets: Sequence[float], tops: Mapping[str, float],
                fixed_overhead: float | None = None) -> Fit:
    """Scales (each at most ``tops[precision]``, so no share of peak passes 1) and the shared
    overhead minimising squared relative error. Alternating: hold each layer to its roofline
    side, solve the then linear problem exactly, repeat; then coordinate descent over the
    scales (the overhead in closed form at every candidate) polishes what the switching
    leaves. With no more figures than scales, or ``fixed_overhead`` given, the overhead is not
    fitted."""
    y = np.asarray(targets, dtype=float)
    if len(terms) == 0:
        raise ValueError("no figures to fit")
    if fixed_overhead is None and len(terms) <= len(tops):
        raise ValueError("as many scales as figures: give the overhead (fixed_overhead)")

    def overhead(scales: Mapping[str, float]) -> float:
        return fixed_overhead if fixed_overhead is not None else _best_overhead(terms, y, scales)

    def loss(scales: Mapping[str, float]) -> float:
        return _error(terms, y, scales, overhead(scales))

    scales = dict(tops)
    for _ in range(50):
        step = _linear_step(terms, y, scales, tops, fixed_overhead)
        if step == scales or loss(step) >= loss(scales):
            break
        scales = step
    err = loss(scales)
    for _ in range(100):
        for prec, top in tops.items():
            def at(scale: float, p: str = prec) -> float:
                return loss({**scales, p: scale})

            scales[prec] = min(scales[prec], _search(at, top), key=at)
        new = loss(scales)
        if err - new <= 1e-12 * max(err, 1e-12):
            break
        err = new
    overhead_us = overhead(scales)
    return Fit(scales, overhead_us, _error(terms, y, scales, overhead_us))


def apply_fit(profile: Profile, fit: Fit, assume: Mapping[str, str] | None = None) -> Profile:
    """``profile`` with each fitted precision's efficiencies scaled (a precision ``assume``
    maps to a fitted one scaled alike) and one per-layer overhead for every precision."""
    scales = {**fit.scales, **{p: fit.scales[src] for p, src in (assume or {}).items()
                               if src in fit.scales}}
    overrides = {**profile.efficiency_overrides}
    for prec, scale in scales.items():
        overrides[prec] = {c: profile.efficiency_for(c, prec) * scale for c in OP_CLASSES}
    return replace(profile, efficiency_overrides=overrides, per_layer_us=fit.overhead_us,
                   per_layer_us_by_precision={})


@dataclass(frozen=True)
class Holdout:
    """One figure predicted by a fit that never saw its network."""

    figure: Figure
    predicted_ms: float

    @property
    def error(self) -> float:
        return self.predicted_ms / self.figure.ms - 1.0


def leave_one_out(terms: Sequence[Terms], figures: Sequence[Figure], tops: Mapping[str, float],
                  fallback_overhead: float) -> list[Holdout]:
    """Each network (every precision of it) left out in turn, the rest fitted, its figures
    predicted. Where too few figures remain to fit the overhead, ``fallback_overhead`` (the
    profile's own) is used; a precision with no figure left keeps its current shares."""
    out = []
    for fig, term in zip(figures, terms, strict=True):
        rest = [j for j, f in enumerate(figures)
                if (f.network, f.resolution) != (fig.network, fig.resolution)]
        kept = {p: t for p, t in tops.items() if any(figures[j].precision == p for j in rest)}
        if not kept:
            continue
        fit = fit_profile([terms[j] for j in rest], [figures[j].ms for j in rest], kept,
                          fallback_overhead if len(rest) <= len(kept) else None)
        out.append(Holdout(fig, term.ms(fit.scales, fit.overhead_us)))
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation (average ranks for ties); nan below two points."""
    if len(a) < 2:
        return float("nan")

    def ranks(x: Sequence[float]) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def median_abs_error(holdouts: Sequence[Holdout]) -> float:
    return float(np.median([abs(h.error) for h in holdouts])) if holdouts else float("nan")
