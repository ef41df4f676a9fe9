"""Which sampler finds the Pareto front fastest? Ground truth on an enumerated space, then replays.

1. Every candidate of ``benchmarks/reduced_space.yaml`` (128) is trained, exported and scored once
   on digits with a fixed seed; latency comes from a predicted profile (``raspberry-pi-4`` by
   default: deterministic, read off the ONNX graph, no timing noise), so the ground truth is
   exact. Results are cached in ``runs/sampler_replay/grid.json`` and reused (about 10 min the
   first time on 2 busy cores, then seconds).
2. Each sampler runs Optuna studies whose objective looks the sampled candidate up in the cache,
   through the same ``suggest_params`` as the real search, so every sample is a grid point and a
   repeated candidate costs an evaluation, as it would for real. Replaying is why many seeds fit.
3. Hypervolume ratio (found / true) after 10, 25 and 50 evaluations, over seeds. Reference
   point: the true front's nadir (its lowest accuracy, highest latency) moved out by 10% of the
   front's range on each axis, so the ratio measures how well the front itself is covered. A
   second table uses a loose reference (accuracy 0.1 = chance, 1.1 x the slowest latency of all
   candidates), where any decent point scores high.
4. The early-stop rule (``search/early_stop.py``) is replayed on the cached learning curves: how
   many candidates it would abort and whether any true Pareto point is among them. Twice: with
   network containment alone (the old rule), and with the latency preview as well (a candidate's
   latency is known before training; on a predicted profile the preview is the cached latency
   exactly, ``tests/evaluators/test_latency_preview.py``).

Run: ``.venv/bin/python benchmarks/sampler_replay.py`` (``--help`` for options);
``--early-stop-only`` replays the rule on the cache as it is, without the samplers and without
evaluating anything, and ``--latency-margins 0.02,0.1`` adds rows for other margins of the
latency comparison (``EarlyStopRule.latency_margin``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.pipeline import evaluate_candidate
from edgeshrink.evaluators.teacher.load import load_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.search.early_stop import EarlyStopRule, Finished
from edgeshrink.search.hypervolume import hypervolume_2d
from edgeshrink.search.samplers import SAMPLERS, make_sampler
from edgeshrink.search.suggest import suggest_params
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.pruning.methods import PRUNING_METHODS
from edgeshrink.spaces.space import Categorical, FloatRange, IntRange, SearchSpace, load_space

HERE = Path(__file__).resolve().parent
SPACE = HERE / "reduced_space.yaml"
RULE = EarlyStopRule()
CHANCE_ACCURACY = 0.1  # loose reference accuracy: 10 digit classes
SLACK = 0.1  # reference point this far beyond the front's nadir, as a share of its range


def _values(dist: Any) -> list[Any]:
    if isinstance(dist, Categorical):
        return list(dist.choices)
    if isinstance(dist, IntRange):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatRange) and dist.low == dist.high:
        return [dist.low]
    if isinstance(dist, FloatRange) and dist.step:
        n = round((dist.high - dist.low) / dist.step)
        return [round(dist.low + i * dist.step, 10) for i in range(n + 1)]
    raise ValueError(f"cannot enumerate {dist!r}: give floats a step or low == high")


def enumerate_space(space: SearchSpace) -> list[dict[str, Any]]:
    names = list(space.distributions)
    grids = [_values(space.distributions[n]) for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grids)]


def key_of(space: SearchSpace, params: dict[str, Any]) -> str:
    return space.candidate_from_params(params).to_json()


def ground_truth(args: argparse.Namespace, space: SearchSpace) -> dict[str, dict]:
    """Evaluate (or load from the cache) every candidate of the space."""
    profile = load_profile(args.profile)
    settings = TrainSettings(epochs=args.epochs, finetune_epochs=args.finetune_epochs)
    header = {"space": hashlib.sha256(SPACE.read_bytes()).hexdigest()[:16],
              "profile": profile.name, "epochs": args.epochs,
              "profile_numbers": hashlib.sha256(repr(profile).encode()).hexdigest()[:16],
              "finetune_epochs": args.finetune_epochs, "seed": 0}
    cache_path = args.run_dir / "grid.json"
    cache: dict[str, Any] = {"header": header, "results": {}}
    if cache_path.is_file():
        stored = json.loads(cache_path.read_text())
        if stored.get("header") == header:
            cache = stored
            # Keys of older schemas name the same candidates: rewrite them in today's schema.
            cache["results"] = {Candidate.from_json(k).to_json(): v
                                for k, v in cache["results"].items()}
    grid = enumerate_space(space)
    todo = [p for p in grid if key_of(space, p) not in cache["results"]]
    if todo:
        data = load_data(DataSpec.parse("digits"), space.input_resolution, args.run_dir / "data")
        teacher = load_teacher(None, data, args.run_dir / "teacher", seed=0)
        print(f"evaluating {len(todo)} of {len(grid)} candidates ({args.epochs} epochs, "
              f"profile {profile.name}); cache {cache_path}", flush=True)
    for i, params in enumerate(todo):
        candidate = space.candidate_from_params(params)
        curve: list[float] = []
        start = time.perf_counter()
        r = evaluate_candidate(candidate, data, teacher, profile, args.run_dir / "grid" / "last",
                               settings, seed=0,
                               on_epoch=lambda _e, acc, c=curve: c.append(round(acc, 6)))
        cache["results"][key_of(space, params)] = {
            "params": params, "accuracy": r.accuracy, "latency_ms": r.latency_ms,
            "curve": curve, "seconds": round(time.perf_counter() - start, 3),
        }
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache))  # after each one: an interruption loses little
        if (i + 1) % 16 == 0:
            print(f"  {i + 1}/{len(todo)}", flush=True)
    return cache["results"]


def replay(space: SearchSpace, results: dict[str, dict], sampler: str, seed: int,
           n: int) -> list[tuple[float, float]]:
    """(accuracy, latency) of the first ``n`` evaluations a sampler asks for."""
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        r = results[key_of(space, suggest_params(trial, space))]
        return r["accuracy"], r["latency_ms"]

    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler(sampler, seed, n))
    study.optimize(objective, n_trials=n)
    return [tuple(t.values) for t in study.trials]


def later_epochs(candidate: Candidate, settings: TrainSettings) -> int:
    """Fine-tune epochs a trial runs after distillation (after each pruning step, and for QAT):
    an abort at any epoch skips them too."""
    prunes = candidate.sparsity > 0 or not PRUNING_METHODS[candidate.pruning].uses_sparsity
    quantized = {candidate.precision, *candidate.stage_precisions} & {"int8", "int4"}
    return ((settings.prune_steps * settings.finetune_epochs if prunes else 0)
            + (max(1, settings.finetune_epochs) if candidate.qat and quantized else 0))


def early_stop_check(space: SearchSpace, results: dict[str, dict], front: set[str],
                     seed: int, preview: bool = False, rule: EarlyStopRule = RULE,
                     settings: TrainSettings | None = None) -> dict[str, float]:
    """Replay the early-stop rule over candidates in a random order, each judged on the ones before.

    ``preview``: the rule also knows each candidate's latency before training (its cached,
    predicted latency: what the preview gives on a predicted profile) and compares it with the
    finished trials' latencies; otherwise containment alone. Returns the share aborted, the
    distillation epochs saved, all training epochs saved (with the fine-tunes after pruning and
    for QAT, as ``settings`` sets them) and how many true Pareto points were aborted.
    """
    settings = settings or TrainSettings()
    keys = sorted(results)
    order = np.random.default_rng(seed).permutation(len(keys))
    history: list[Finished] = []
    aborted = lost = epochs_saved = all_saved = 0
    for number, idx in enumerate(order):  # its place in the order is the trial's number
        r = results[keys[idx]]
        candidate = space.candidate_from_params(r["params"])
        n_epochs = len(r["curve"])
        latency = r["latency_ms"] if preview else None
        bound, kept = None, True  # bound: set where the rule audits instead of aborting
        for epoch, acc in enumerate(r["curve"], start=1):
            if rule.reason(epoch, acc, candidate, history, latency_ms=latency) is None:
                continue
            if rule.audits(number):
                bound = rule.bound(epoch, acc, history)
                break
            kept = False
            aborted += 1
            lost += keys[idx] in front
            epochs_saved += n_epochs - epoch
            all_saved += n_epochs - epoch + later_epochs(candidate, settings)
            break
        if kept:
            history.append(Finished(candidate, r["accuracy"], tuple(r["curve"]),
                                    r["latency_ms"], bound=bound))
    return {"aborted": aborted / len(keys), "lost": lost, "epochs_saved": epochs_saved,
            "all_epochs_saved": all_saved}


def cached_results(args: argparse.Namespace, space: SearchSpace) -> dict[str, dict]:
    """The cached grid as it is, whatever profile numbers it was made with (its latencies are
    consistent among themselves, which is all the early-stop replay needs); evaluates nothing."""
    stored = json.loads((args.run_dir / "grid.json").read_text())
    results = {Candidate.from_json(k).to_json(): v for k, v in stored["results"].items()}
    missing = [p for p in enumerate_space(space) if key_of(space, p) not in results]
    if missing:
        raise SystemExit(f"{len(missing)} grid candidates are not in {args.run_dir}/grid.json: "
                         "run without --early-stop-only first")
    print(f"cache {args.run_dir / 'grid.json'}: {stored['header']}")
    return results


def print_early_stop(space: SearchSpace, results: dict[str, dict], front: set[str],
                     seeds: int, settings: TrainSettings,
                     latency_margins: Sequence[float] = ()) -> None:
    """Both rules side by side over the same random orders, then the new one with other
    ``latency_margin`` values (how the default was chosen)."""
    epochs = sum(len(r["curve"]) for r in results.values())
    later = sum(later_epochs(space.candidate_from_params(r["params"]), settings)
                for r in results.values())
    print(f"\nearly-stop rule replayed on the grid ({seeds} random orders; {epochs} "
          f"distillation epochs in all, {epochs + later} with the fine-tunes; {len(front)} true "
          "Pareto points)\n\n| rule | aborted: mean (min-max) | distillation epochs saved: "
          "mean (min-max) | all training epochs saved: mean | true Pareto points aborted, "
          "all orders | orders losing any |\n|---|---|---|---|---|---|")
    rows = [("containment only (old)", False, RULE),
            (f"+ latency preview (new, latency margin {RULE.latency_margin:g})", True, RULE),
            ("+ latency preview, no audits (margins fixed)", True,
             dataclasses.replace(RULE, audit_every=0))]
    rows += [(f"+ latency preview, latency margin {m:g}", True,
              dataclasses.replace(RULE, latency_margin=m)) for m in latency_margins]
    for label, preview, rule in rows:
        checks = [early_stop_check(space, results, front, seed, preview, rule, settings)
                  for seed in range(seeds)]
        share = [c["aborted"] for c in checks]
        saved = [c["epochs_saved"] for c in checks]
        print(f"| {label} | {statistics.mean(share):.1%} ({min(share):.1%}-{max(share):.1%}) | "
              f"{statistics.mean(saved):.1f} ({min(saved)}-{max(saved)}) | "
              f"{statistics.mean(c['all_epochs_saved'] for c in checks):.1f} | "
              f"{sum(c['lost'] for c in checks)} | {sum(c['lost'] > 0 for c in checks)} |",
              flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, default=Path("runs/sampler_replay"))
    p.add_argument("--profile", default="raspberry-pi-4")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--budgets", default="10,25,50")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--early-stop-only", action="store_true",
                   help="replay only the early-stop rule, on the cached grid as it is")
    p.add_argument("--latency-margins", default="",
                   help="comma list: also replay the latency rule with these latency_margin")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # tiny models and the GP sampler: threads only contend here
    optuna.logging.set_verbosity(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    space = load_space(SPACE).with_precisions(load_profile(args.profile).precisions)
    results = cached_results(args, space) if args.early_stop_only else ground_truth(args, space)
    points = {k: (r["accuracy"], r["latency_ms"]) for k, r in results.items()}
    front = {k for k, (a, lat) in points.items()
             if not any(a2 >= a and l2 <= lat and (a2, l2) != (a, lat)
                        for a2, l2 in points.values())}
    settings = TrainSettings(epochs=args.epochs, finetune_epochs=args.finetune_epochs)
    margins = [float(m) for m in args.latency_margins.split(",") if m]
    if args.early_stop_only:
        print_early_stop(space, results, front, args.seeds, settings, margins)
        return
    accs, lats = [points[k][0] for k in front], [points[k][1] for k in front]
    tight = (min(accs) - SLACK * (max(accs) - min(accs)),
             max(lats) + SLACK * (max(lats) - min(lats)))
    loose = (CHANCE_ACCURACY, (1 + SLACK) * max(lat for _, lat in points.values()))
    print(f"\nground truth: {len(results)} candidates, {len(front)} on the true front; median "
          f"{statistics.median(r['seconds'] for r in results.values()):.1f} s per candidate")
    for k in sorted(front, key=lambda k: points[k][1]):
        r = results[k]
        c = space.candidate_from_params(r["params"])
        print(f"  acc {r['accuracy']:.4f}  {r['latency_ms']:.4f} ms  {c.precision} "
              f"sparsity {c.sparsity:g}  {c.arch}")

    budgets = [int(b) for b in args.budgets.split(",")]
    names = args.samplers.split(",")
    runs: dict[str, list[list[tuple[float, float]]]] = {}
    seconds: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        runs[name] = [replay(space, results, name, seed, max(budgets))
                      for seed in range(args.seeds)]
        seconds[name] = (time.perf_counter() - start) / args.seeds
    for label, ref in (("front-nadir", tight), ("loose", loose)):
        true_hv = hypervolume_2d(points.values(), ref)
        print(f"\n{label} reference point: accuracy {ref[0]:.4f}, latency {ref[1]:.4f} ms; "
              f"true hypervolume {true_hv:.5f}; {args.seeds} seeds\n")
        print("| sampler | " + " | ".join(f"HV ratio @{b}: median (mean ± sd, min)"
                                         for b in budgets) + " | unique @25 | s per replay |")
        print("|---|" + "---|" * len(budgets) + "---|---|")
        for name in names:
            cells = []
            for b in budgets:
                v = [hypervolume_2d(values[:b], ref) / true_hv for values in runs[name]]
                cells.append(f"**{statistics.median(v):.3f}** ({statistics.mean(v):.3f} ± "
                             f"{statistics.stdev(v):.3f}, {min(v):.3f})")
            unique = statistics.mean(len(set(values[:25])) for values in runs[name])
            print(f"| {name} | " + " | ".join(cells) + f" | {unique:.1f} | "
                  f"{seconds[name]:.1f} |")

    print_early_stop(space, results, front, args.seeds, settings, margins)


if __name__ == "__main__":
    sys.exit(main())
