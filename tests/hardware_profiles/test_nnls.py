"""Our Lawson-Hanson NNLS against scipy's: calibrate keeps its own so devices need no scipy."""

import numpy as np
import pytest

from edgeshrink.hardware_profiles.calibrate.fit import nnls

so = pytest.importorskip("scipy.optimize")

KINDS = ("tall", "wide", "duplicate and zero columns", "low rank", "calibration-like")


def _problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded problems; kinds 1-3 are rank-deficient, 4 is non-negative and badly scaled."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    n = int(rng.integers(2, 15))
    m = max(int(rng.integers(3, 40)), n + 3)
    if kind == "wide":  # fewer equations than unknowns
        m = max(2, n - int(rng.integers(1, n)))
        a = rng.normal(size=(m, n))
    elif kind == "duplicate and zero columns":
        a = rng.normal(size=(m, n))
        a[:, -1] = a[:, 0]
        a[:, 1] = 0.0
    elif kind == "low rank":
        r = max(1, n // 2)
        a = rng.normal(size=(m, r)) @ rng.normal(size=(r, n))
    elif kind == "calibration-like":  # counts of MACs, bytes, layers: columns decades apart
        a = rng.uniform(0, 1, size=(m, n)) * 10.0 ** rng.uniform(-3, 3, size=n)
        return a, a @ rng.uniform(0, 2, size=n) * rng.uniform(0.9, 1.1, size=m)
    else:
        a = rng.normal(size=(m, n))
    return a, 3 * rng.normal(size=m)  # mixed signs: many constraints end up active


def test_nnls_matches_scipy_on_seeded_problems():
    rank_deficient = 0
    for seed in range(50):
        a, b = _problem(seed)
        ours, (theirs, their_norm) = nnls(a, b), so.nnls(a, b)
        assert (ours >= 0).all()
        our_norm = np.linalg.norm(a @ ours - b)
        # The same minimum (relative; an exact fit's is 0, so a floor at rounding of |b|).
        assert abs(our_norm - their_norm) <= 1e-9 * their_norm + 1e-12 * np.linalg.norm(b), seed
        if np.linalg.matrix_rank(a) < a.shape[1]:
            rank_deficient += 1  # minimisers are not unique: only the norm must agree
        elif np.linalg.cond(a) < 1e4:
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9 * max(1, theirs.max()))
    assert rank_deficient >= 25
