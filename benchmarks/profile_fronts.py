"""Same search, two devices: how the front on `raspberry-pi-4` differs from the front on `host`.

Reads two finished studies (one searched with `--profile raspberry-pi-4`, one with the default
`--profile host`) and prints, for each, its Pareto front and the share of int8 among all trials
and on the front. Then it cross-scores every front model on the other device (the Pi's latency
model for the host front; a gauge-corrected onnxruntime timing here for the Pi front), so the
two fronts are compared on the same axes:

    edgeshrink search --study pi40 --profile raspberry-pi-4 --trials 40
    edgeshrink search --study host40 --trials 40
    python benchmarks/profile_fronts.py --pi runs/pi40 --host runs/host40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from edgeshrink.evaluators.data import load_digits_splits
from edgeshrink.hardware_profiles import load_profile
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.hardware_profiles.measure import measure_latency, prepare_gauge
from edgeshrink.reports.frame import pareto_frame
from edgeshrink.search.study import load_existing_study


def _study(run_dir: Path) -> optuna.Study:
    return load_existing_study(run_dir.name, run_dir, None)


def _summary(name: str, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    front_numbers = set(pareto_frame(study)["trial"])
    front = sorted((t for t in done if t.number in front_numbers), key=lambda t: t.values[1])
    share = np.mean([t.params["precision"] == "int8" for t in done])
    front_share = np.mean([t.params["precision"] == "int8" for t in front])
    print(f"\n{name}: {len(done)} trials, int8 in {share:.0%} of trials and "
          f"{front_share:.0%} of the {len(front)} front points")
    return front


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pi", type=Path, required=True, help="run dir searched on raspberry-pi-4")
    ap.add_argument("--host", type=Path, required=True, help="run dir searched on host")
    args = ap.parse_args()
    pi, host = load_profile("raspberry-pi-4"), load_profile("host")
    sample = load_digits_splits(16).val.x[:1].numpy()
    gauge = prepare_gauge(host, args.host, sample, _study(args.host).user_attrs.get("gauge_ms"))
    print("| device searched | trial | precision | sparsity | accuracy | Pi ms (model) "
          "| host ms (measured) | size B | arch |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, run_dir in (("raspberry-pi-4", args.pi), ("host", args.host)):
        for t in _summary(name, _study(run_dir)):
            artifact = t.user_attrs["artifact"]
            pi_ms = predict_latency(artifact, pi).total_ms
            host_ms = (t.values[1] if name == "host" else
                       measure_latency(artifact, sample, host.measurement, gauge).median_ms)
            rows.append(f"| {name} | {t.number} | {t.params['precision']} | "
                        f"{t.params['sparsity']:.2f} | {t.values[0]:.4f} | {pi_ms:.3f} | "
                        f"{host_ms:.4f} | {t.user_attrs['size_bytes']:,} | "
                        f"{t.user_attrs['arch']} |")
    print("\n" + "\n".join(rows))
    # Why the fronts differ: the same trained network as fp32 and as int8, on both devices.
    # Every int8 trial kept its fp32 export next to the quantized file.
    pairs = []
    for run_dir in (args.pi, args.host):
        for t in _study(run_dir).trials:
            if t.state == TrialState.COMPLETE and t.params["precision"] == "int8":
                q = Path(t.user_attrs["artifact"])
                pairs.append((q.with_name("model_fp32.onnx"), q))
    if pairs:
        pi_ratio = [predict_latency(q, pi).total_ms / predict_latency(f, pi).total_ms
                    for f, q in pairs]
        host_ratio = [measure_latency(q, sample, host.measurement, gauge).median_ms
                      / measure_latency(f, sample, host.measurement, gauge).median_ms
                      for f, q in pairs]
        print(f"\nint8 latency / fp32 latency of the same network, median over {len(pairs)} "
              f"int8 trials: raspberry-pi-4 {np.median(pi_ratio):.2f} (predicted), host "
              f"{np.median(host_ratio):.2f} (measured)")

if __name__ == "__main__":
    main()
