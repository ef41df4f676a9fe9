"""Fit the timings: the roofline by alternating non-negative least squares, and a linear cost
per runtime kernel."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from edgeshrink.hardware_profiles.calibrate.timing import Sample
from edgeshrink.hardware_profiles.graph_layers import Layer
from edgeshrink.hardware_profiles.kernel_costs import kernel_key, kernel_ms, kernel_units
from edgeshrink.hardware_profiles.profile_terms import KERNEL_TERMS, PATH_FALLBACK

KERNEL_VECTOR = 16  # channels per vector step of the kernels (AVX-512: 16 floats, 16 x 4 int8)
MAX_GMACS = 1e5  # above any edge device; caps a rate the fit left unbounded
MAX_BANDWIDTH_GBPS = 1e3


# Not scipy.optimize.nnls: calibrate runs on the device, where the bundle promises to need only
# numpy and onnxruntime, and scipy is a large compiled wheel, often missing for small ARM boards.
# tests/hardware_profiles/test_nnls.py checks this against scipy's on seeded problems.
def nnls(a: np.ndarray, b: np.ndarray, iterations: int = 500) -> np.ndarray:
    """Non-negative least squares (Lawson-Hanson), in numpy alone."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    for _ in range(iterations):
        w = a.T @ (b - a @ x)
        if passive.all() or w[~passive].max(initial=-np.inf) <= 1e-12:
            break
        passive[np.argmax(np.where(passive, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x


@dataclass(frozen=True)
class Fit:
    per_inference_us: float
    per_layer_us: dict[str, float]  # by precision: int8 layers also requantize
    gmacs: dict[tuple[str, str, str], float]  # GMAC/s by (op class, precision, kernel path)
    bandwidth_gbps: float
    mape: float  # on the micro-benchmarks themselves
    channel_block: dict[str, int] = field(default_factory=dict)  # by precision

    def rate(self, la: Layer) -> float:
        """The layer's path, else the next faster one it falls back to (as a profile does)."""
        path = la.path(self.channel_block.get(la.precision, 1))
        return next(self.gmacs[k] for q in PATH_FALLBACK[path]
                    if self.gmacs.get(k := (la.op_class, la.precision, q)))

    def predict_ms(self, layers: list[Layer]) -> float:
        """The fitted roofline itself; the written profile must predict the same."""
        return (self.per_inference_us + sum(
            self.per_layer_us[la.precision] + 1e-3 * max(
                la.blocked_macs(self.channel_block.get(la.precision, 1)) / self.rate(la),
                la.bytes_moved() / self.bandwidth_gbps) for la in layers)) / 1e3


def _key(la: Layer, blocks: dict[str, int]) -> tuple[str, str, str]:
    return la.op_class, la.precision, la.path(blocks.get(la.precision, 1))


PATH_NOTES = {"unaligned": "input channels off the channel block",
              "generic": "weights dequantized at run time: no pre-packed kernel"}


BLOCK_CHOICES = (1, 4, 8, 16)  # channel blocks of common kernels: none, NEON, AVX2, AVX-512


def fit_roofline(samples: list[Sample], rounds: int = 20,
                 block_choices: tuple[int, ...] = BLOCK_CHOICES) -> Fit:
    """The best fit over the channel block of each precision's kernels (a small grid)."""
    precs = sorted({la.precision for s in samples for la in s.layers})
    best: Fit | None = None
    for combo in itertools.product(block_choices, repeat=len(precs)):
        fit = _fit(samples, dict(zip(precs, combo, strict=True)), rounds)
        if best is None or fit.mape < best.mape - 1e-9:
            best = fit
    assert best is not None
    return best


def _fit(samples: list[Sample], blocks: dict[str, int], rounds: int) -> Fit:
    keys = sorted({_key(la, blocks) for s in samples for la in s.layers}
                  | {(la.op_class, la.precision, "aligned") for s in samples for la in s.layers})
    precs = sorted({la.precision for s in samples for la in s.layers})
    layer_col = {p: 1 + i for i, p in enumerate(precs)}
    first = 1 + len(precs)
    col = {k: first + i for i, k in enumerate(keys)}
    bw_col = first + len(keys)
    b = np.array([s.ms for s in samples])
    memory_bound: dict[tuple[int, int], bool] = {}
    coef = None
    for _ in range(rounds):
        a = np.zeros((len(samples), bw_col + 1))
        for i, s in enumerate(samples):
            a[i, 0] = 1.0
            for j, la in enumerate(s.layers):
                a[i, layer_col[la.precision]] += 1
                if memory_bound.get((i, j), False):
                    a[i, bw_col] += la.bytes_moved()
                else:
                    a[i, col[_key(la, blocks)]] += la.blocked_macs(blocks[la.precision])
        scale = a.max(axis=0)
        scale[scale == 0] = 1.0
        weights = 1.0 / b  # relative error
        coef = nnls((a / scale) * weights[:, None], b * weights) / scale
        changed = False
        for i, s in enumerate(samples):
            for j, la in enumerate(s.layers):
                compute = la.blocked_macs(blocks[la.precision]) * coef[col[_key(la, blocks)]]
                bound = la.bytes_moved() * coef[bw_col] > compute
                changed |= memory_bound.get((i, j), False) != bound
                memory_bound[(i, j)] = bound
        if not changed:
            break
    # A cost fitted to zero means the data never saw that class (or memory) bind. Such a class
    # gets the best rate measured at its precision, and an unbounded bandwidth a high finite
    # one, so the written profile stays readable and predicts exactly what Fit.predict_ms does.
    gmacs = {k: 1.0 / coef[col[k]] / 1e6 for k in keys if coef[col[k]] > 0}
    for p in precs:
        best = max((v for (_, q, _), v in gmacs.items() if q == p), default=MAX_GMACS)
        gmacs.update({k: best for k in keys if k[1] == p and k not in gmacs})
    fit = Fit(
        per_inference_us=float(coef[0] * 1e3),
        per_layer_us={p: float(coef[layer_col[p]] * 1e3) for p in precs},
        gmacs={k: float(min(v, MAX_GMACS)) for k, v in gmacs.items()},
        bandwidth_gbps=float(min(MAX_BANDWIDTH_GBPS, 1.0 / max(coef[bw_col], 1e-300) / 1e6)),
        mape=0.0,
        channel_block=blocks,
    )
    pred = np.array([fit.predict_ms(s.layers) for s in samples])
    return replace(fit, mape=float(np.mean(np.abs(pred - b) / b)))


@dataclass(frozen=True)
class KernelFit:
    per_inference_us: float
    kernels: dict[str, dict[str, float]]  # "<kernel> <class> <precision>" -> term -> cost
    vector: int
    mape: float  # on the micro-benchmarks themselves

    def predict_ms(self, layers: list[Layer]) -> float:
        """What the written profile predicts for layers of kernels it saw."""
        return self.per_inference_us / 1e3 + sum(
            kernel_ms(la, self.kernels[kernel_key(la)], self.vector) for la in layers)


def fit_kernels(samples: list[Sample], vector: int = KERNEL_VECTOR) -> KernelFit:
    """Non-negative least squares on relative error over every (kernel, term) the samples use.
    A term fitted to zero is written as zero (measured as free), not left out."""
    cols: dict[tuple[str, str], int] = {("", "inference"): 0}
    rows = []
    for s in samples:
        row = {("", "inference"): 1.0}
        for la in s.layers:
            for term, n in kernel_units(la, vector).items():
                row[(kernel_key(la), term)] = row.get((kernel_key(la), term), 0.0) + n
        rows.append(row)
        for k in row:
            cols.setdefault(k, len(cols))
    a = np.zeros((len(samples), len(cols)))
    for i, row in enumerate(rows):
        for k, n in row.items():
            a[i, cols[k]] = n
    b = np.array([s.ms for s in samples])
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    coef = nnls((a / scale) / b[:, None], np.ones_like(b)) / scale  # ms per unit
    kernels: dict[str, dict[str, float]] = {}
    for (key, term), j in cols.items():
        if key:  # layer_us in microseconds, the rest in nanoseconds per unit
            kernels.setdefault(key, {})[term] = float(coef[j] * (1e3 if term == "layer_us"
                                                                 else 1e6))
    order = {term: i for i, term in enumerate(KERNEL_TERMS)}  # the schema's order, to read
    kernels = {key: dict(sorted(terms.items(), key=lambda kv: order[kv[0]]))
               for key, terms in kernels.items()}
    fit = KernelFit(float(coef[0] * 1e3), kernels, vector, 0.0)
    pred = np.array([fit.predict_ms(s.layers) for s in samples])
    return replace(fit, mape=float(np.mean(np.abs(pred - b) / b)))
