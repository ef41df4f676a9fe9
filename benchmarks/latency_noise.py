"""Is the latency objective signal or noise? Re-measure stored artifacts and compare.

For every completed trial of a finished study (default: runs/digits from `edgeshrink search`),
re-measure the artifact's latency REPEATS times, interleaved so machine load hits all models alike,
and report: the spread of re-measurements per model, the disagreement with the stored value,
and the latency range of the Pareto front in units of that noise. Also prints the per-stage
seconds of the trials, medians.

    python benchmarks/latency_noise.py [--run-dir runs/digits] [--study digits] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from edgeshrink.evaluators.data import load_digits_splits
from edgeshrink.hardware_profiles.measure import measure_latency
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.search.study import load_existing_study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", type=Path, default=Path("runs/digits"))
    ap.add_argument("--study", default="digits")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    study = load_existing_study(args.study, args.run_dir, None)
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    front = {t.number for t in study.best_trials}
    sample = load_digits_splits(16).val.x[:1].numpy()
    settings = load_profile("host").measurement
    runs: dict[int, list[float]] = {t.number: [] for t in trials}
    for _ in range(args.repeats):
        for t in trials:
            lat = measure_latency(t.user_attrs["artifact"], sample, settings)
            runs[t.number].append(lat.median_ms)

    spreads, drifts = [], []
    for t in trials:
        r = np.asarray(runs[t.number])
        spreads.append((r.max() - r.min()) / np.median(r))
        drifts.append(abs(np.median(r) - t.values[1]) / t.values[1])
    noise = float(np.median(spreads))
    front_lat = [statistics.median(runs[n]) for n in front]
    all_lat = [statistics.median(runs[t.number]) for t in trials]
    print(f"trials re-measured: {len(trials)}, {args.repeats} times each (interleaved)")
    print(f"re-measure spread (max-min)/median: median {noise:.1%}, "
          f"90th pct {np.percentile(spreads, 90):.1%}")
    print(f"re-measured median vs stored value: median |diff| {np.median(drifts):.1%}, "
          f"90th pct {np.percentile(drifts, 90):.1%}")
    print(f"latency range, all trials: {min(all_lat):.3f} .. {max(all_lat):.3f} ms "
          f"({max(all_lat) / min(all_lat):.1f}x)")
    if front_lat:
        print(f"latency range, Pareto front ({len(front_lat)} points): {min(front_lat):.3f} .. "
              f"{max(front_lat):.3f} ms ({max(front_lat) / min(front_lat):.1f}x, "
              f"{(max(front_lat) / min(front_lat) - 1) / max(noise, 1e-9):.0f}x the median spread)")
    stages: dict[str, list[float]] = {}
    for t in trials:
        for k, v in t.user_attrs.get("stage_seconds", {}).items():
            stages.setdefault(k, []).append(v)
    print("per-trial seconds by stage (median): "
          + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in stages.items()))
    durations = [t.duration.total_seconds() for t in trials if t.duration]
    print(f"trial wall time: median {statistics.median(durations):.1f} s, "
          f"mean {statistics.mean(durations):.1f} s")


if __name__ == "__main__":
    main()
