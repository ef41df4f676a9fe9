"""How many trials does the default search need? Real default searches at several budgets.

Each budget runs the quick start's search as it is (digits, default space, host, GP), in its
own run directory that shares one cached teacher, so the wall time is the search's alone. A run
of K trials is not the first K trials of a longer run: the sampler's random start depends on the
budget. For each seed: the front's hypervolume, relative to the longest budget's run of the same
seed and to the union front of all budgets of that seed. Reference point as in
``sampler_replay.py``: the union front's nadir moved out by 10% of its range on each axis, so
the ratio measures how well the front itself is covered, not how far it is from chance.

    .venv/bin/python benchmarks/default_budget.py --budgets 30,40,80 --seeds 0,1
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
from edgeshrink.evaluators.teacher.load import load_teacher
from edgeshrink.hardware_profiles.cpu import host_cpu
from edgeshrink.search.hypervolume import hypervolume_2d, nadir_reference, pareto_2d
from edgeshrink.search.runner import SearchOptions, run_search
from edgeshrink.spaces.space import load_space


def one_run(out: Path, teacher: Path, budget: int, seed: int) -> dict:
    run_dir = out / f"k{budget}-s{seed}"
    if not (run_dir / "teacher").exists():
        shutil.copytree(teacher, run_dir / "teacher")
    start = time.perf_counter()
    study = run_search(SearchOptions(study=f"k{budget}-s{seed}", run_dir=run_dir, trials=budget,
                                     seed=seed, progress=False, report=False))
    wall = time.perf_counter() - start
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return {"budget": budget, "seed": seed, "wall_s": wall, "completed": len(done),
            "pruned": sum(t.state == TrialState.PRUNED for t in study.trials),
            "median_trial_s": statistics.median(
                (t.datetime_complete - t.datetime_start).total_seconds() for t in done),
            "points": [tuple(t.values) for t in done]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="30,40,80")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-default-budget"))
    args = parser.parse_args()
    budgets = sorted(int(b) for b in args.budgets.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"CPU: {host_cpu().describe()}")
    results_path = args.out / "results.json"
    runs = json.loads(results_path.read_text()) if results_path.exists() else []
    data = load_data(DataSpec.parse("digits"), load_space().input_resolution)
    for seed in seeds:
        teacher = args.out / f"teacher-s{seed}"  # trained here, outside every timed search
        load_teacher(None, data, teacher, seed=seed)
        for budget in budgets:
            if any(r["budget"] == budget and r["seed"] == seed for r in runs):
                continue
            runs.append(one_run(args.out, teacher, budget, seed))
            results_path.write_text(json.dumps(runs, indent=1))
    print("| seed | trials | search wall s | median trial s | HV / longest run | "
          "HV / union front |")
    print("|---|---|---|---|---|---|")
    for seed in seeds:
        mine = sorted((r for r in runs if r["seed"] == seed), key=lambda r: r["budget"])
        union = pareto_2d([tuple(p) for r in mine for p in r["points"]])
        ref = nadir_reference(union)
        hv_union = hypervolume_2d(union, ref)
        hv_longest = hypervolume_2d([tuple(p) for p in mine[-1]["points"]], ref)
        for r in mine:
            hv = hypervolume_2d([tuple(p) for p in r["points"]], ref)
            print(f"| {seed} | {r['budget']} | {r['wall_s']:.0f} | {r['median_trial_s']:.1f} | "
                  f"{hv / hv_longest:.4f} | {hv / hv_union:.4f} |")


if __name__ == "__main__":
    main()
