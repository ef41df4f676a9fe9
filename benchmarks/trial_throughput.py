"""Trials per hour of the default digits search, before and after the efficiency changes.

Runs the real ``edgeshrink search`` (default space, 80 trials asked, profile ``host``, seed 0)
once per configuration, side by side: the configurations take turns of ``--turn`` seconds
(each turn resumes its study), so a change in the load of this shared machine hits all of them
alike. All share one teacher, trained once. The first ``--same`` trials of every configuration
are the same random candidates (enqueued), so their seconds compare like with like; after them
each sampler picks its own, and a search that prefers small models runs faster trials.

* ``before``: the old default: TPE, every trial trained to the end in NCHW layout;
* ``channels-last``: the same, training in channels-last layout (the new default layout);
* ``after``: today's defaults: GP sampler, early abort with the latency preview, channels-last.

All use torch's default thread count (one per core). ``1-thread`` (TPE, one torch thread per
trial) is there on request (``--configs``): it wins only while other jobs share the cores.

Seconds per trial are Optuna's trial durations (sampling, training, export, measurement), so
trials per hour = 3600 / mean; per-stage medians come from the ``stage_seconds`` of completed
trials. Run: ``nice -n 10 .venv/bin/python benchmarks/trial_throughput.py`` (about 15 min).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import warnings
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.evaluators.teacher.builtin import load_or_train_teacher
from edgeshrink.search.hypervolume import hypervolume_2d
from edgeshrink.search.runner import SearchOptions, run_search
from edgeshrink.search.study import create_or_resume_study
from edgeshrink.search.suggest import suggest_params
from edgeshrink.spaces.space import load_space

CONFIGS = {
    "before": {"sampler": "tpe", "early_stop": False, "channels_last": False},
    "channels-last": {"sampler": "tpe", "early_stop": False},
    "after": {},  # SearchOptions' defaults
    "1-thread": {"sampler": "tpe", "early_stop": False, "train_threads": 1},
}
DEFAULT_CONFIGS = ("before", "channels-last", "after")
STAGES = ("preview", "distill", "prune", "export", "quantize", "measure")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, default=Path("runs/trial_throughput"))
    p.add_argument("--turn", type=float, default=30.0, help="seconds per turn")
    p.add_argument("--rounds", type=int, default=4, help="turns per configuration")
    p.add_argument("--same", type=int, default=12, help="shared random candidates first")
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    args = p.parse_args(argv)
    names = args.configs.split(",")
    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    default_threads = torch.get_num_threads()

    shutil.rmtree(args.run_dir, ignore_errors=True)
    teacher_dir = args.run_dir / "teacher"
    load_or_train_teacher(load_digits_splits(16), teacher_dir, seed=0)
    space, draw = load_space(), optuna.create_study(sampler=optuna.samplers.RandomSampler(7))
    shared = [suggest_params(draw.ask(), space) for _ in range(args.same)]
    for name in names:
        shutil.copytree(teacher_dir, args.run_dir / name / "teacher")
        study = create_or_resume_study(name, args.run_dir / name, None,
                                       optuna.samplers.RandomSampler())
        for params in shared:
            study.enqueue_trial(params)

    studies: dict[str, optuna.Study] = {}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name in names:
            torch.set_num_threads(default_threads)  # what "keep torch's setting" means
            studies[name] = run_search(SearchOptions(
                study=name, run_dir=args.run_dir / name, timeout=args.turn, seed=0,
                report=False, progress=False, **CONFIGS[name]))

    done = {n: [t for t in s.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            for n, s in studies.items()}
    worst = max(t.values[1] for ts in done.values() for t in ts if t.values)
    ref = (0.1, 1.1 * worst)
    base = statistics.mean(t.duration.total_seconds() for t in done[names[0]])
    same = min(args.same, *(len(ts) for ts in done.values()))
    base_same = statistics.mean(t.duration.total_seconds() for t in done[names[0]][:same])
    print(f"\n{args.rounds} turns of {args.turn:g} s per configuration; torch default "
          f"threads here: {default_threads}; load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; hypervolume reference (accuracy 0.1, latency "
          f"{ref[1]:.4f} ms, host latencies are noisy)\n")
    print(f"| configuration | complete / pruned | s per trial, mean (median) | trials per hour | "
          f"vs {names[0]} | s per trial, first {same} (same candidates) | vs {names[0]} | "
          + " | ".join(STAGES) + " | front hypervolume |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(STAGES) + "---|")
    for name in names:
        seconds = [t.duration.total_seconds() for t in done[name]]
        complete = [t for t in done[name] if t.state == TrialState.COMPLETE]
        stages = [statistics.median(t.user_attrs["stage_seconds"].get(s, 0.0) for t in complete)
                  for s in STAGES]
        hv = hypervolume_2d((tuple(t.values) for t in complete), ref)
        mean, mean_same = statistics.mean(seconds), statistics.mean(seconds[:same])
        print(f"| {name} | {len(complete)} / {len(done[name]) - len(complete)} | {mean:.2f} "
              f"({statistics.median(seconds):.2f}) | {3600 / mean:.0f} | {base / mean:.2f}x | "
              f"{mean_same:.2f} | {base_same / mean_same:.2f}x | "
              + " | ".join(f"{s:.2f}" for s in stages) + f" | {hv:.5f} |")


if __name__ == "__main__":
    sys.exit(main())
