"""Time to a good front: wall-clock until a search's front reaches 90% and 95% of the reference.

Each configuration runs real searches (``run_search``) for the same wall-clock budget, one per
seed, one after another on a quiet machine; the teacher is trained once beforehand and copied
into every run directory, so it is in no run's time. The reference front is the union of every
run's completed trials. Two hypervolume reference points are reported: the union front's nadir
moved out by 10% of its range (as in ``sampler_replay.py``; strict, since with few trials per run
the union front spans little) and the worst accuracy and latency of any completed trial. For
each run, the hypervolume of its front after each completed trial, against the time since the
search started, gives the time to 90% and 95% of the reference hypervolume (never reached:
blank).

Configurations:

* ``defaults``: today's defaults (GP sampler, early abort on, channels-last training);
* ``no-abort``: the defaults with the early abort off;
* ``skeleton``: the project's first configuration (TPE, no early abort, NCHW training).

    .venv/bin/python benchmarks/time_to_front.py --space mobilenetv2-32 --budget 900 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from optuna.trial import TrialState

from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.settings import TrainSettings
from edgeshrink.evaluators.teacher.load import load_teacher
from edgeshrink.hardware_profiles.cpu import host_cpu
from edgeshrink.search.hypervolume import hypervolume_2d, nadir_reference, pareto_2d
from edgeshrink.search.runner import SearchOptions, run_search
from edgeshrink.spaces.space import load_space

CONFIGS: dict[str, dict] = {
    "defaults": {},
    "no-abort": {"early_stop": False},
    "skeleton": {"sampler": "tpe", "early_stop": False, "channels_last": False},
}
LEVELS = (0.90, 0.95)


def one_run(args: argparse.Namespace, teacher: Path, config: str, seed: int) -> dict:
    name = f"{config}-s{seed}"
    run_dir = args.out / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a run is timed whole or not at all
    shutil.copytree(teacher, run_dir / "teacher")
    start = time.time()
    study = run_search(SearchOptions(study=name, run_dir=run_dir, trials=10_000,
                                     timeout=args.budget, seed=seed, space=args.space,
                                     dataset=args.dataset, progress=False, report=False,
                                     **CONFIGS[config]))
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE),
                  key=lambda t: t.datetime_complete)
    return {"config": config, "seed": seed, "trials": len(study.trials),
            "completed": [(t.datetime_complete.timestamp() - start, *t.values[:2]) for t in done],
            "median_trial_s": statistics.median(
                (t.datetime_complete - t.datetime_start).total_seconds() for t in done)
            if done else None}


def time_to(run: dict, ref: tuple[float, float], target: float) -> float | None:
    seen: list[tuple[float, float]] = []
    for at, acc, lat in run["completed"]:
        seen.append((acc, lat))
        if hypervolume_2d(seen, ref) >= target:
            return at
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2-32")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-time-to-front"))
    parser.add_argument("--report-only", action="store_true",
                        help="print the tables from --out's results.json; run nothing")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = args.out / "results.json"
    if args.report_only:
        print_tables(args, json.loads(results.read_text()))
        return
    print(f"CPU: {host_cpu().describe()}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data(DataSpec.parse(args.dataset), load_space(args.space).input_resolution,
                     args.out / "data")
    for seed in seeds:  # a search trains its teacher with its own seed: once, outside the timing
        load_teacher(None, data, args.out / f"teacher-s{seed}", seed=seed,
                     settings=TrainSettings())
    runs = json.loads(results.read_text()) if results.exists() else []
    for seed in seeds:  # alternate configurations, so drift in the machine hits both alike
        for config in args.configs.split(","):
            if not any(r["config"] == config and r["seed"] == seed for r in runs):
                runs.append(one_run(args, args.out / f"teacher-s{seed}", config, seed))
                results.write_text(json.dumps(runs))
    print_tables(args, runs)


def print_tables(args: argparse.Namespace, runs: list[dict]) -> None:
    union = pareto_2d([(a, lat) for r in runs for _, a, lat in r["completed"]])
    every = [(a, lat) for r in runs for _, a, lat in r["completed"]]
    print(f"{args.space} on {args.dataset}, {args.budget:.0f} s per run; reference front: the "
          f"union front of {len(runs)} runs ({len(union)} points)")
    for label, ref in references(union, every):
        report(runs, [c for c in args.configs.split(",") if any(r["config"] == c for r in runs)],
               union, ref, label)


def references(union: list, every: list) -> list[tuple[str, tuple[float, float]]]:
    """Two reference points for the hypervolume: the union front's nadir moved out by 10% of its
    range (strict: a run scores only where it nears the best front's own span), and the worst
    accuracy and latency of any completed trial (the usual choice: credits every trade-off)."""
    return [("union front's nadir + 10%", nadir_reference(union)),
            ("worst trial of any run", nadir_reference(every, slack=0.0))]


def report(runs: list[dict], configs: list[str], union: list, ref: tuple[float, float],
           label: str) -> None:
    best = hypervolume_2d(union, ref)
    print(f"\nreference point: {label}, accuracy {ref[0]:.4f}, latency {ref[1]:.4g} ms")
    print("| configuration | seed | trials | median trial s | final HV / reference | "
          + " | ".join(f"time to {level:.0%} s" for level in LEVELS) + " |")
    print("|---" * (5 + len(LEVELS)) + "|")
    for r in sorted(runs, key=lambda r: (r["config"], r["seed"])):
        final = hypervolume_2d([(a, lat) for _, a, lat in r["completed"]], ref) / best
        times = [time_to(r, ref, level * best) for level in LEVELS]
        print(f"| {r['config']} | {r['seed']} | {r['trials']} | {r['median_trial_s'] or 0:.1f} | "
              f"{final:.3f} | " + " | ".join(f"{t:.0f}" if t is not None else "-" for t in times)
              + " |")
    for config in configs:
        mine = [r for r in runs if r["config"] == config]
        for level in LEVELS:
            times = [time_to(r, ref, level * best) for r in mine]
            reached = [t for t in times if t is not None]
            print(f"{config}: {level:.0%} reached in {len(reached)} of {len(mine)} runs, median "
                  + (f"{statistics.median(reached):.0f} s" if reached else "-"))

if __name__ == "__main__":
    main()
