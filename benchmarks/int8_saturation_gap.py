"""How far is each trial's stored accuracy from the file's reference int8 arithmetic?

On x86 CPUs without VNNI, onnxruntime's int8 kernels add u8 x s8 product pairs in int16 and
saturate (hardware_profiles/cpu.py); a search there used to store accuracies below what the same
file computes on a phone or a VNNI server. For every completed trial of a study this re-scores
the stored ``model.onnx`` on the validation split twice: in reference arithmetic (onnxruntime
with graph optimizations off: QDQ as dequantize -> float op -> quantize) and with this machine's
kernels, and prints the gap to the stored accuracy. Target (issue 16): no trial more than 0.5
points below its reference accuracy.

    python benchmarks/int8_saturation_gap.py [--run-dir runs/digits] [--study digits]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from edgeshrink.evaluators.data.sources import load_data, spec_from_setup
from edgeshrink.evaluators.onnx_eval import onnx_accuracy
from edgeshrink.evaluators.rescore import MODEL_FILE, artifact_dir
from edgeshrink.hardware_profiles.cpu import host_cpu
from edgeshrink.search.study import load_existing_study
from edgeshrink.spaces.candidate import Candidate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", type=Path, default=Path("runs/digits"))
    ap.add_argument("--study", default="digits")
    args = ap.parse_args()

    study = load_existing_study(args.study, args.run_dir, None)
    setup = study.user_attrs["setup"]
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    print(f"scoring CPU now: {host_cpu().describe()}")
    print(f"study CPU: {setup.get('cpu', {}).get('model', 'not recorded')}; "
          f"{len(trials)} completed trials")
    data_by_res = {}
    rows = []
    for t in trials:
        candidate = Candidate.from_dict(t.user_attrs["candidate"])
        res = candidate.input_resolution
        if res not in data_by_res:
            data_by_res[res] = load_data(spec_from_setup(setup), res, args.run_dir / "data")
        data = data_by_res[res]
        path = artifact_dir(t.number, t.user_attrs.get("artifact"), args.run_dir) / MODEL_FILE
        x, y = data.val.x.numpy(), data.val.y.numpy()
        reference = onnx_accuracy(path, x, y, method="reference")
        host = onnx_accuracy(path, x, y, method="host")
        realised = t.user_attrs.get("quantization", {}).get("realised", {})
        rows.append((t.number, "int8" in realised, candidate.reduce_range, t.values[0],
                     t.user_attrs.get("accuracy_method", "host (not recorded)"), reference,
                     host))
    print(f"\n{'trial':>5}  int8  7-bit  stored  method     reference  host     stored-ref")
    for n, int8, reduced, stored, method, ref, host in rows:
        print(f"{n:5d}  {'yes' if int8 else 'no':>4}  {'yes' if reduced else 'no':>5}  "
              f"{stored:.4f}  {method:<9}  {ref:.4f}     {host:.4f}   {100 * (stored - ref):+.2f}")
    gaps = np.array([100 * (ref - stored) for _, _, _, stored, _, ref, _ in rows])
    int8 = np.array([r[1] for r in rows])
    host_gaps = np.array([100 * (ref - host) for *_, ref, host in rows])
    worst = int(np.argmax(gaps))
    print(f"\nint8 trials: {int8.sum()} of {len(rows)}")
    print(f"worst gap, reference minus stored: {gaps[worst]:+.2f} points (trial "
          f"{rows[worst][0]}; target <= 0.5)")
    print(f"trials more than 0.5 points below reference: {int((gaps > 0.5).sum())}, "
          f"more than 1 point: {int((gaps > 1).sum())}")
    print(f"this machine's kernels vs reference, now: worst {host_gaps.max():+.2f} points, "
          f"{int((np.abs(host_gaps) > 0).sum())} trials differ")


if __name__ == "__main__":
    main()
