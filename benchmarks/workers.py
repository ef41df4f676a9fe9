"""Trials per minute with 1 and with 2 worker processes on this machine, on the same trials.

Runs ``edgeshrink search --jobs 1``, then ``--jobs 2`` on a fresh study that first enqueues the
exact parameters the first run sampled, so both runs train and measure the same models. The
teacher is trained once beforehand and copied into both run directories. Throughput is given two
ways: over the command's wall clock (process start-up, gauge, report included) and over the trial
window (first trial start to last trial end). Because both runs score the same models, the table
also says how far the second run's measured latencies and accuracies moved: two workers on two
cores time each model while the other worker trains.

    python benchmarks/workers.py [--trials 16] [--epochs 5] [--finetune-epochs 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.search.study import create_or_resume_study, load_existing_study

CLI = [sys.executable, "-m", "edgeshrink.search.cli"]


def _busy_cpu_s() -> float:
    """CPU seconds all processes of the machine have used since boot (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this script's finished child processes (their children included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _search(run_dir: Path, jobs: int, args: argparse.Namespace, trials: int) -> float:
    cmd = [*CLI, "search", "--study", "bench", "--run-dir", str(run_dir), "--trials",
           str(trials), "--jobs", str(jobs), "--epochs", str(args.epochs), "--finetune-epochs",
           str(args.finetune_epochs), "--sampler", "random", "--seed", str(args.seed),
           "--no-progress"]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _complete(run_dir: Path) -> list[FrozenTrial]:
    study = load_existing_study("bench", run_dir, None)
    return [t for t in study.trials if t.state == TrialState.COMPLETE]


def _key(trial: FrozenTrial) -> str:
    return json.dumps(trial.params, sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the run directories here")
    args = ap.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="edgeshrink-workers-"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    # Teacher (and data cache) once, outside the timing.
    warm = base / "warm"
    subprocess.run([*CLI, "search", "--study", "warm", "--run-dir", str(warm), "--trials", "1",
                    "--epochs", "1", "--finetune-epochs", "0", "--seed", str(args.seed),
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    runs = {}
    for jobs in (1, 2):
        run_dir = base / f"jobs{jobs}"
        for cache in ("teacher", "data"):
            if (warm / cache).is_dir():
                shutil.copytree(warm / cache, run_dir / cache)
        if jobs == 2:  # the very models the first run trained, in the same order
            study = create_or_resume_study("bench", run_dir, None,
                                           optuna.samplers.RandomSampler())
            for t in runs[1]["trials"]:
                study.enqueue_trial(t.params)
        busy, own = _busy_cpu_s(), _own_cpu_s()
        wall = _search(run_dir, jobs, args, args.trials)
        # Cores kept busy by other people's processes meanwhile: this VM is shared.
        load = ((_busy_cpu_s() - busy) - (_own_cpu_s() - own)) / wall
        trials = _complete(run_dir)
        window = (max(t.datetime_complete for t in trials)
                  - min(t.datetime_start for t in trials)).total_seconds()
        runs[jobs] = {"trials": trials, "wall": wall, "window": window, "load": load,
                      "median_s": statistics.median(t.duration.total_seconds() for t in trials)}

    one = {_key(t): t for t in runs[1]["trials"]}
    paired = [(one[_key(t)], t) for t in runs[2]["trials"] if _key(t) in one]
    lat_moves = [abs(b.values[1] / a.values[1] - 1) for a, b in paired]
    same_acc = sum(a.values[0] == b.values[0] for a, b in paired)

    print(f"\n{args.trials} trials, epochs {args.epochs}, fine-tune epochs {args.finetune_epochs}, "
          f"random sampler, {os.cpu_count()} CPU cores\n")
    print("| workers | completed | wall s | trials/min (wall) | trial window s | "
          "trials/min (window) | median trial s | cores busy with others' work |")
    print("|---|---|---|---|---|---|---|---|")
    for jobs, r in runs.items():
        n = len(r["trials"])
        print(f"| {jobs} | {n} | {r['wall']:.0f} | {60 * n / r['wall']:.1f} | "
              f"{r['window']:.0f} | {60 * n / r['window']:.1f} | {r['median_s']:.1f} | "
              f"{max(0.0, r['load']):.2f} |")
    rate = {jobs: len(r["trials"]) / r["wall"] for jobs, r in runs.items()}
    speedup = rate[2] / rate[1]
    print(f"\nspeed-up (wall): {speedup:.2f}x. Same models in both runs: {len(paired)}; "
          f"identical accuracy: {same_acc}/{len(paired)}; latency moved by a median of "
          f"{100 * statistics.median(lat_moves):.1f}% (max {100 * max(lat_moves):.1f}%) "
          "with two workers")
    if args.out is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
