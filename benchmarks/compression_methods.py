"""One fixed student, four compressions, measured side by side (issue 3's benchmark).

For each input resolution the same student (``--arch``) is built, distilled and compressed by the
real trial pipeline (``evaluate_candidate``), four ways, with the same seed, so all four start
from identical weights:

* fp32 dense;
* structured channel pruning, 50% of the channels (Taylor importance), iterative with
  fine-tuning, fp32;
* int8 (static, per-channel symmetric weights, calibrated activations), dense;
* pruned 50% + int8.

Accuracy is that of each exported ONNX file on the validation split; latency is onnxruntime on
this host, one thread, single-sample, gauge-corrected, the four files timed round-robin
``--repeats`` times (median); size is the ONNX file's bytes. Ratios are against fp32 dense.

At 16x16 the digits models are tiny and per-call overhead weighs heavily, so the benchmark also
runs at 32x32 (the digits upsampled) where compute dominates.

    nice -n 10 .venv/bin/python benchmarks/compression_methods.py [--resolutions 16 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

import torch

from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.evaluators.pipeline import evaluate_candidate
from edgeshrink.evaluators.teacher.builtin import load_or_train_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.measure import measure_latency, prepare_gauge
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.spaces.candidate import Candidate, parse_arch

DEFAULT_ARCH = "w1:ir_k3_e6_r2_s1_c16,ir_k3_e6_r2_s2_c24,ir_k3_e6_r2_s2_c32,ir_k3_e6_r2_s1_c64"
VARIANTS = {  # name -> candidate fields changed from the fp32 dense student
    "fp32 dense": {},
    "channel-pruned 50%": {"pruning": "channel", "sparsity": 0.5},
    "int8": {"precision": "int8"},
    "pruned 50% + int8": {"pruning": "channel", "sparsity": 0.5, "precision": "int8"},
}


def _student(args: argparse.Namespace, resolution: int) -> Candidate:
    arch = args.arch
    width, stages = parse_arch(arch)
    return Candidate(width_mult=width, stages=stages, temperature=4.0, alpha=0.5, sparsity=0.0,
                     precision="fp32", input_resolution=resolution, pruning="channel",
                     importance=args.importance)


def run(resolution: int, args: argparse.Namespace, work: Path) -> list[dict]:
    torch.manual_seed(0)
    data = load_digits_splits(resolution)
    teacher = load_or_train_teacher(data, work / f"teacher{resolution}", seed=0)
    profile = load_profile("host")
    settings = TrainSettings(epochs=args.epochs, finetune_epochs=args.finetune_epochs)
    sample = data.val.x[:1].numpy()
    gauge = prepare_gauge(profile, work / f"gauge{resolution}", sample)
    base = _student(args, resolution)
    rows = []
    for name, change in VARIANTS.items():
        candidate = dataclasses.replace(base, **change)
        result = evaluate_candidate(candidate, data, teacher, profile,
                                    work / f"r{resolution}" / name.replace(" ", "_"),
                                    settings, seed=0, gauge=gauge)
        rows.append({"name": name, "result": result, "times": []})
        print(f"  {resolution}px {name}: trained, accuracy {result.accuracy:.4f}", flush=True)
    for _ in range(args.repeats):  # round-robin: a load change on the machine hits all alike
        for row in rows:
            row["times"].append(measure_latency(row["result"].artifact, sample,
                                                profile.measurement, gauge).median_ms)
    return rows


def table(resolution: int, rows: list[dict]) -> str:
    base = rows[0]
    base_ms = statistics.median(base["times"])
    lines = [f"### {resolution}x{resolution} input", "",
             "| variant | accuracy | latency ms | speed-up | size bytes | smaller | MACs |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        r, ms = row["result"], statistics.median(row["times"])
        lines.append(
            f"| {row['name']} | {r.accuracy:.4f} | {ms:.4f} | {base_ms / ms:.2f}x | "
            f"{r.size_bytes:,} | {base['result'].size_bytes / r.size_bytes:.2f}x | {r.macs:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=DEFAULT_ARCH)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--importance", default="taylor", choices=("l1", "l2", "taylor"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"student {args.arch}, {args.importance} importance, {args.epochs} epochs + "
          f"{args.finetune_epochs} fine-tune epochs per pruning step, latency median of "
          f"{args.repeats} round-robin timings\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.resolutions:  # each table as soon as it is measured
            print(table(res, run(res, args, Path(tmp))) + "\n", flush=True)

if __name__ == "__main__":
    main()
