"""Exact hypervolume of an (accuracy up, latency down) front, for judging a search.

Optuna 5 computes hypervolumes only in private modules (``optuna._hypervolume``), so this is a
small exact 2-D sweep of our own; the tests check it against Optuna's.
"""

from __future__ import annotations

from collections.abc import Iterable


def hypervolume_2d(points: Iterable[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``(accuracy, latency)`` points and bounded by ``ref``.

    ``ref`` is (lowest accuracy, highest latency) that still counts; points beyond it add nothing.
    """
    ref_acc, ref_lat = ref
    inside = sorted((lat, -acc) for acc, lat in points if acc > ref_acc and lat < ref_lat)
    area, best_acc = 0.0, ref_acc
    for i, (lat, neg_acc) in enumerate(inside):  # sweep by rising latency
        best_acc = max(best_acc, -neg_acc)
        next_lat = inside[i + 1][0] if i + 1 < len(inside) else ref_lat
        area += (next_lat - lat) * (best_acc - ref_acc)
    return area


def pareto_2d(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The ``(accuracy, latency)`` points no other point dominates."""
    pts = list(points)
    return [p for p in pts if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in pts)]


def nadir_reference(front: Iterable[tuple[float, float]],
                    slack: float = 0.1) -> tuple[float, float]:
    """A front's nadir moved out by ``slack`` of its range on each axis (0.01 where the range is
    0), so a hypervolume ratio measures how well the front itself is covered."""
    accs, lats = zip(*front, strict=True)
    acc_range, lat_range = max(accs) - min(accs) or 0.01, max(lats) - min(lats) or 0.01
    return min(accs) - slack * acc_range, max(lats) + slack * lat_range
