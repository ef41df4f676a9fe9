"""Training speed of default-space students in NCHW against channels-last (NHWC) memory layout.

Both layouts compute the same thing in a different summation order, so the final losses agree
closely but not bitwise (the table shows both). Students
are drawn from the default space (seeded), each trained for --epochs by the trial's own
``train_distilled``, the two layouts alternating, --repeats times; seconds per epoch, medians.

    python benchmarks/training_layout.py [--students 6] [--epochs 2] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import optuna
import torch

from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.evaluators.training import TrainSettings, train_distilled
from edgeshrink.search.suggest import suggest_candidate
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.space import load_space


def epoch_seconds(candidate, data, logits, settings: TrainSettings, epochs: int) -> tuple:
    torch.manual_seed(0)
    model = build_student(candidate, data.in_channels, data.num_classes)
    start = time.perf_counter()
    loss = train_distilled(model, data.train.x, data.train.y, logits, epochs=epochs,
                           settings=settings, temperature=candidate.temperature,
                           alpha=candidate.alpha)
    return (time.perf_counter() - start) / epochs, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_digits_splits(16)
    logits = torch.randn(len(data.train.x), data.num_classes, generator=torch.Generator()
                         .manual_seed(0))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = load_space()
    layouts = {"NCHW": TrainSettings(channels_last=False), "NHWC": TrainSettings()}
    print(f"{args.threads} threads, {args.epochs} epochs per timing, {args.repeats} repeats\n")
    print("| student | NCHW s/epoch | NHWC s/epoch | speed-up | final loss NCHW / NHWC |")
    print("|---|---|---|---|---|")
    ratios = []
    for _ in range(args.students):
        cand = dataclasses.replace(suggest_candidate(study.ask(), space), hint_weight=0.0)
        times = {name: [] for name in layouts}
        losses = {}
        for _ in range(args.repeats):
            for name, settings in layouts.items():
                sec, losses[name] = epoch_seconds(cand, data, logits, settings, args.epochs)
                times[name].append(sec)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        ratios.append(med["NCHW"] / med["NHWC"])
        print(f"| `{cand.arch}` | {med['NCHW']:.3f} | {med['NHWC']:.3f} | {ratios[-1]:.2f}x | "
              f"{losses['NCHW']:.4f} / {losses['NHWC']:.4f} |",
              flush=True)
    print(f"\nmedian speed-up {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
