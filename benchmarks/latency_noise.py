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

from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.hardware_profiles.gauge import Gauge
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
    gauge_ms = study.user_attrs.get("gauge_ms")
    gauge = None if gauge_ms is None else Gauge(str(args.run_dir / "gauge.onnx"), gauge_ms)
    # Side by side, in the same runs: the stored metric (gauge-corrected when the study has a
    # gauge) and the raw wall-clock median it was derived from.
    runs: dict[str, dict[int, list[float]]] = {"corrected": {}, "raw": {}}
    for _ in range(args.repeats):
        for t in trials:
            lat = measure_latency(t.user_attrs["artifact"], sample, settings, gauge)
            runs["corrected"].setdefault(t.number, []).append(lat.median_ms)
            runs["raw"].setdefault(t.number, []).append(lat.raw_median_ms)
    print(f"trials re-measured: {len(trials)}, {args.repeats} times each (interleaved); "
          f"gauge: {'none' if gauge is None else f'{gauge.ms:.4f} ms'}")
    for kind in ("corrected", "raw") if gauge else ("raw",):
        stored_key = "latency_ms" if kind == "corrected" or gauge is None else "latency_raw_ms"
        spreads, drifts = [], []
        for t in trials:
            r = np.asarray(runs[kind][t.number])
            spreads.append((r.max() - r.min()) / np.median(r))
            stored = t.user_attrs.get(stored_key)
            if stored:
                drifts.append(abs(np.median(r) - stored) / stored)
        noise = float(np.median(spreads))
        print(f"[{kind}] re-measure spread (max-min)/median: median {noise:.1%}, "
              f"90th pct {np.percentile(spreads, 90):.1%}")
        if drifts:
            print(f"[{kind}] re-measured median vs stored value: median |diff| "
                  f"{np.median(drifts):.1%}, 90th pct {np.percentile(drifts, 90):.1%}")
        front_lat = [statistics.median(runs[kind][n]) for n in front]
        all_lat = [statistics.median(runs[kind][t.number]) for t in trials]
        print(f"[{kind}] latency range, all trials: {min(all_lat):.3f} .. {max(all_lat):.3f} ms "
              f"({max(all_lat) / min(all_lat):.1f}x)")
        if front_lat:
            print(f"[{kind}] latency range, Pareto front ({len(front_lat)} points): "
                  f"{min(front_lat):.3f} .. {max(front_lat):.3f} ms "
                  f"({max(front_lat) / min(front_lat):.1f}x, "
                  f"{(max(front_lat) / min(front_lat) - 1) / max(noise, 1e-9):.0f}x the median "
                  "spread)")
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
