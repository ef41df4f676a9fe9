"""One study's trials scored on two devices: the front on `host` against the front on a profile.

Every completed trial's exported file is predicted on ``--profile`` (default raspberry-pi-4)
with the latency model; its accuracy is the trial's own (the same file). Both fronts are drawn
from the same candidates, so any difference comes from the devices alone. Also prints, for every
int8 trial, how much faster its int8 file is than the fp32 export of the same network on each
device (the fp32 export stays next to it in the trial directory).

    python benchmarks/same_trials_two_devices.py --run-dir runs/digits [--profile raspberry-pi-4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.hardware_profiles import load_profile
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.hardware_profiles.measure import measure_latency, prepare_gauge
from edgeshrink.reports.frame import pareto_mask
from edgeshrink.search.study import load_existing_study


def _front_rows(trials, latency: dict[int, float]) -> list:
    pts = np.array([[t.values[0], latency[t.number]] for t in trials])
    mask = pareto_mask(pts, (True, False))
    return sorted((t for t, m in zip(trials, mask, strict=True) if m),
                  key=lambda t: latency[t.number])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--study", default=None, help="default: the run directory's name")
    ap.add_argument("--profile", default="raspberry-pi-4")
    args = ap.parse_args()
    study = load_existing_study(args.study or args.run_dir.name, args.run_dir, None)
    searched_on = study.user_attrs.get("setup", {}).get("profile")
    if searched_on != "host":
        raise SystemExit(f"{args.run_dir} was searched on {searched_on!r}, not 'host': its "
                         "stored latencies are not host measurements")
    device = load_profile(args.profile)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE
            and all(c <= 0 for c in t.constraints.values())]
    host_ms = {t.number: t.values[1] for t in done}
    dev_ms = {t.number: predict_latency(t.user_attrs["artifact"], device).total_ms for t in done}
    int8_share = np.mean([t.params["precision"] == "int8" for t in done])
    print(f"{len(done)} trials; int8 in {int8_share:.0%}")
    for name, lat in (("host (measured)", host_ms), (f"{device.name} (predicted)", dev_ms)):
        front = _front_rows(done, lat)
        share = np.mean([t.params["precision"] == "int8" for t in front])
        print(f"\nfront on {name}: {len(front)} points, int8 {share:.0%}")
        print("| trial | precision | sparsity | accuracy | host ms | "
              f"{device.name} ms | arch |")
        print("|---|---|---|---|---|---|---|")
        for t in front:
            print(f"| {t.number} | {t.params['precision']} | {t.params['sparsity']:.2f} | "
                  f"{t.values[0]:.4f} | {host_ms[t.number]:.4f} | {dev_ms[t.number]:.3f} | "
                  f"{t.user_attrs['arch']} |")
    pairs = [(Path(t.user_attrs["artifact"]).with_name("model_fp32.onnx"),
              Path(t.user_attrs["artifact"])) for t in done if t.params["precision"] == "int8"]
    if pairs:
        host = load_profile("host")
        sample = load_digits_splits(16).val.x[:1].numpy()
        gauge = prepare_gauge(host, args.run_dir, sample, study.user_attrs.get("gauge_ms"))
        dev = [predict_latency(q, device).total_ms / predict_latency(f, device).total_ms
               for f, q in pairs]
        here = [measure_latency(q, sample, host.measurement, gauge).median_ms
                / measure_latency(f, sample, host.measurement, gauge).median_ms
                for f, q in pairs]
        print(f"\nint8 / fp32 latency of the same network, median over {len(pairs)} int8 "
              f"trials: {device.name} {np.median(dev):.2f} (predicted), host "
              f"{np.median(here):.2f} (measured)")


if __name__ == "__main__":
    main()
