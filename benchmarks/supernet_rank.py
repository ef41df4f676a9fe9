"""Weight sharing (Once-for-All style): does a supernet rank candidates like full training, and
how much time does it save? Measured on the enumerated reduced space against its ground truth.

1. Ground truth: ``runs/sampler_replay/grid.json`` from ``benchmarks/sampler_replay.py`` (every
   candidate of ``benchmarks/reduced_space.yaml`` distilled 3 epochs from scratch, pruned,
   quantized, exported and scored on digits; ``raspberry-pi-4`` predicted latency, exact). Keys
   written by an older candidate schema are mapped through ``Candidate.from_dict``; a missing
   cache is computed by sampler_replay's own code (about 10 minutes more).
2. The supernet of that space is trained (sandwich rule, ``evaluators/supernet/``) and cached
   in ``runs/supernet_rank/supernet``.
3. Every candidate is evaluated by the real pipeline (distil, prune, export, quantize, measure
   the exported file) with its student inheriting the supernet's weights and recalibrated
   BatchNorm, then a short fine-tune in place of training from scratch: one epoch by default,
   ``--finetune-epochs 0,1`` adds none (OFA's own evaluation). Two supernets (seeds 0 and 1)
   show how much the ranking depends on the supernet's own training.
4. Seed noise of the ground truth itself: all 128 candidates trained again from scratch with
   another seed through today's pipeline. Its Kendall tau against the cache is about the most a
   proxy can be expected to reach (it also absorbs changes of the pipeline since the cache was
   made), and it times full evaluations side by side with the inherited ones.
5. Kendall tau (all 128; architectures only, each architecture's mean over its 4 compression
   settings; the 32 fp32 unpruned candidates), top-10 overlap, how many true Pareto points the
   proxy puts on its own front, the true hypervolume of the proxy's front (the candidates it
   would pick, scored by their true accuracy and latency) over the true front's, and seconds.

Results are cached per mode in ``runs/supernet_rank/results.json`` (a rerun prints the table in
seconds; ``--fresh`` evaluates again). Run: ``.venv/bin/python benchmarks/supernet_rank.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from scipy.stats import kendalltau

from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.pipeline import evaluate_candidate
from edgeshrink.evaluators.supernet import (
    SuperNet,
    SupernetSettings,
    train_supernet,
)
from edgeshrink.evaluators.teacher.load import load_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.search.hypervolume import hypervolume_2d
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.space import load_space

HERE = Path(__file__).resolve().parent
SPACE = HERE / "reduced_space.yaml"
SLACK = 0.1  # hypervolume reference: the true front's nadir moved out by 10% of its range
TOP = 10


def ground_truth(truth_dir: Path, profile: str) -> dict[str, dict[str, Any]]:
    """The cached grid keyed by today's candidate JSON (older schemas mapped, never retrained)."""
    path = truth_dir / "grid.json"
    if not path.is_file():
        sys.path.insert(0, str(HERE))
        import sampler_replay

        space = load_space(SPACE).with_precisions(load_profile(profile).precisions)
        sampler_replay.ground_truth(argparse.Namespace(run_dir=truth_dir, profile=profile,
                                                       epochs=3, finetune_epochs=1), space)
    stored = json.loads(path.read_text())
    header = stored["header"]
    expected = {"space": hashlib.sha256(SPACE.read_bytes()).hexdigest()[:16], "profile": profile,
                "epochs": 3, "seed": 0}
    if any(header.get(k) != v for k, v in expected.items()):
        raise SystemExit(f"{path} was made for {header}, not {expected}; run sampler_replay.py")
    return {Candidate.from_json(k).to_json(): r for k, r in stored["results"].items()}


def evaluate_all(keys: list[str], settings: TrainSettings, seed: int, supernet: SuperNet | None,
                 cache: dict, mode: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """(accuracy, latency, seconds) of each candidate through the real pipeline; cached."""
    done = cache.setdefault(mode, {})
    todo = [k for k in keys if k not in done]
    if todo:
        print(f"{mode}: evaluating {len(todo)} candidates", flush=True)
    for i, key in enumerate(todo):
        start = time.perf_counter()
        r = evaluate_candidate(Candidate.from_json(key), args.data, args.teacher, args.profile,
                               args.run_dir / "trials" / "last", settings, seed=seed,
                               supernet=supernet)
        done[key] = {"accuracy": r.accuracy, "latency_ms": r.latency_ms,
                     "seconds": round(time.perf_counter() - start, 3)}
        args.cache_path.write_text(json.dumps(cache))
        if (i + 1) % 32 == 0:
            print(f"  {i + 1}/{len(todo)}", flush=True)
    return {k: done[k] for k in keys}


def front(points: dict[str, tuple[float, float]]) -> set[str]:
    return {k for k, (a, lat) in points.items()
            if not any(a2 >= a and l2 <= lat and (a2, l2) != (a, lat)
                       for a2, l2 in points.values())}


def tau(truth: dict[str, float], proxy: dict[str, float]) -> float:
    keys = sorted(truth)
    return float(kendalltau([truth[k] for k in keys], [proxy[k] for k in keys]).statistic)


def by_arch(values: dict[str, float]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for k, v in values.items():
        groups.setdefault(Candidate.from_json(k).arch, []).append(v)
    return {a: statistics.mean(v) for a, v in groups.items()}


def compare(truth: dict[str, dict], proxy: dict[str, dict]) -> dict[str, Any]:
    t_acc = {k: r["accuracy"] for k, r in truth.items()}
    p_acc = {k: proxy[k]["accuracy"] for k in truth}
    plain = [k for k in truth if Candidate.from_json(k).precision == "fp32"
             and Candidate.from_json(k).sparsity == 0]
    t_points = {k: (r["accuracy"], r["latency_ms"]) for k, r in truth.items()}
    p_points = {k: (proxy[k]["accuracy"], proxy[k]["latency_ms"]) for k in truth}
    t_front, p_front = front(t_points), front(p_points)
    accs, lats = [t_points[k][0] for k in t_front], [t_points[k][1] for k in t_front]
    ref = (min(accs) - SLACK * (max(accs) - min(accs)),
           max(lats) + SLACK * (max(lats) - min(lats)))
    true_hv = hypervolume_2d(t_points.values(), ref)
    top = set(sorted(t_acc, key=t_acc.get)[-TOP:]) & set(sorted(p_acc, key=p_acc.get)[-TOP:])
    return {
        "tau_all": tau(t_acc, p_acc),
        "tau_arch": tau(by_arch(t_acc), by_arch(p_acc)),
        "tau_plain": tau({k: t_acc[k] for k in plain}, {k: p_acc[k] for k in plain}),
        "top10": len(top),
        "front_hits": f"{len(t_front & p_front)}/{len(t_front)}",
        "front_size": len(p_front),
        "hv_ratio": hypervolume_2d([t_points[k] for k in p_front], ref) / true_hv,
        "hv_own": hypervolume_2d(p_points.values(), ref) / true_hv,
        "latency_diff": max(abs(p_points[k][1] - t_points[k][1]) / t_points[k][1]
                            for k in truth),
        "s_per_eval": statistics.median(proxy[k]["seconds"] for k in truth),
        "s_total": sum(proxy[k]["seconds"] for k in truth),
        "acc_median": statistics.median(p_acc.values()),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth-dir", type=Path, default=Path("runs/sampler_replay"))
    p.add_argument("--run-dir", type=Path, default=Path("runs/supernet_rank"))
    p.add_argument("--profile", default="raspberry-pi-4")
    p.add_argument("--supernet-epochs", type=int, default=SupernetSettings.epochs)
    p.add_argument("--supernet-seeds", default="0,1", help="comma list: one supernet each")
    p.add_argument("--finetune-epochs", default="1",
                   help="comma list of fine-tune epochs after inheriting (default 1; try 0,1)")
    p.add_argument("--fresh", action="store_true", help="evaluate again, ignoring results.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # tiny models on a shared 2-core CPU: threads only contend
    warnings.filterwarnings("ignore", category=UserWarning)

    truth = ground_truth(args.truth_dir, args.profile)
    keys = sorted(truth)
    space = load_space(SPACE).with_precisions(load_profile(args.profile).precisions)
    args.data = load_data(DataSpec.parse("digits"), space.input_resolution,
                          args.truth_dir / "data")
    args.teacher = load_teacher(None, args.data, args.truth_dir / "teacher", seed=0)
    args.profile = load_profile(args.profile)
    sn_settings = SupernetSettings(epochs=args.supernet_epochs)
    args.cache_path = args.run_dir / "results.json"
    trained = {k: v for k, v in asdict(sn_settings).items() if k != "finetune_epochs"}
    header = {"supernet": trained, "truth": hashlib.sha256(
        json.dumps(truth, sort_keys=True).encode()).hexdigest()[:16]}
    cache: dict[str, Any] = {"header": header}
    if args.cache_path.is_file() and not args.fresh:
        stored = json.loads(args.cache_path.read_text())
        cache = stored if stored.get("header") == header else cache

    full = TrainSettings(epochs=3, finetune_epochs=1)  # as the ground truth was made
    runs, supernet_seconds = {}, {}
    for seed in (int(s) for s in args.supernet_seeds.split(",")):
        supernet = train_supernet(space, args.data, args.teacher, sn_settings,
                                  args.run_dir / "supernet", seed=seed)
        how = "trained now" if supernet.trained_now else "cached; time of its training"
        print(f"supernet seed {seed}: {sum(t.numel() for t in supernet.parameters())} weights, "
              f"{sn_settings.epochs} epochs, {supernet.train_seconds:.0f} s ({how})", flush=True)
        for epochs in (int(e) for e in args.finetune_epochs.split(",")):
            label = f"inherit, BN recalibration, {epochs} fine-tune epochs; supernet seed {seed}"
            supernet.settings = replace(sn_settings, finetune_epochs=epochs)
            runs[label] = evaluate_all(keys, full, 0, supernet, cache,
                                       f"inherit-{epochs}-seed{seed}", args)
            supernet_seconds[label] = supernet.train_seconds
    reseed = evaluate_all(keys, full, 1, None, cache, "scratch-seed1", args)

    rows = {label: compare(truth, r) for label, r in runs.items()}
    noise = compare(truth, reseed)
    full_s = statistics.median(truth[k]["seconds"] for k in keys)

    n_front = len(front({k: (r["accuracy"], r["latency_ms"]) for k, r in truth.items()}))
    print(f"\nground truth: {len(keys)} candidates, {n_front} on the true front, median "
          f"{full_s:.2f} s per full evaluation (3 epochs from scratch)")
    print("\n| evaluation | Kendall tau: all 128 | architectures (32, mean of 4) | fp32 unpruned "
          "(32) | top-10 overlap | true front points on its front | HV of its picks at true "
          "accuracy / true | HV of its own files / true | median s per candidate | s for all "
          "128 (+ supernet) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    total_full = sum(truth[k]["seconds"] for k in keys)
    print(f"| full training, seed 0 (the ground truth) | 1 | 1 | 1 | {TOP} | {n_front}/{n_front} "
          f"| 1 | 1 | {full_s:.2f} | {total_full:.0f} |")
    for label, r in {"full training again, seed 1 (today's pipeline)": noise, **rows}.items():
        extra = f" (+ {supernet_seconds[label]:.0f})" if label in rows else ""
        print(f"| {label} | **{r['tau_all']:.3f}** | {r['tau_arch']:.3f} | {r['tau_plain']:.3f} "
              f"| {r['top10']} | {r['front_hits']} (front of {r['front_size']}) | "
              f"{r['hv_ratio']:.3f} | {r['hv_own']:.3f} | {r['s_per_eval']:.2f} | "
              f"{r['s_total']:.0f}{extra} |")
    median_truth = statistics.median(t["accuracy"] for t in truth.values())
    for label, r in {"seed 1": noise, **rows}.items():
        print(f"{label}: median accuracy {r['acc_median']:.3f} (ground truth {median_truth:.3f});"
              f" latency differs from the cache by at most {r['latency_diff']:.1%}")


if __name__ == "__main__":
    sys.exit(main())
