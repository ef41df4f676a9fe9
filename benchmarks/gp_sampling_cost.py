"""What the default sampler (Optuna's GPSampler) costs per trial on the default space.

The objective is replaced by random numbers, so only sampling is timed: seconds per ``ask`` plus
the search's own ``suggest_candidate``, median over trials --from to --trials. ``--no-device-
context`` also times it without the ``with torch.device("cpu")`` that Optuna 5 wraps around
every relative sample (optuna#6418): a torch function mode that intercepts each of the many small
tensor operations of the acquisition search. Same seed, same suggestions either way.

    python benchmarks/gp_sampling_cost.py [--trials 60] [--from 40]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import optuna
import torch

from edgeshrink.search.samplers import make_sampler
from edgeshrink.search.suggest import suggest_candidate
from edgeshrink.spaces.space import load_space


class _NoDeviceContext:
    """torch, except that ``torch.device(...)`` used as a context manager does nothing."""

    def __getattr__(self, name: str):
        return getattr(torch, name)

    @staticmethod
    def device(_: str) -> contextlib.nullcontext:
        return contextlib.nullcontext()


def run(trials: int, start: int, device_context: bool) -> tuple[float, list]:
    import optuna.samplers._gp.sampler as gp_module  # private: only for this measurement

    gp_module.torch = torch if device_context else _NoDeviceContext()
    space, rng = load_space(), np.random.default_rng(0)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler("gp", 0, 80))
    seconds, last = [], []
    for i in range(trials):
        t0 = time.perf_counter()
        trial = study.ask()
        suggest_candidate(trial, space)
        if i >= start:
            seconds.append(time.perf_counter() - t0)
        study.tell(trial, [rng.uniform(0.9, 1.0), rng.uniform(0.02, 0.5)])
        last = sorted(trial.params.items())
    gp_module.torch = torch
    return statistics.median(seconds), last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--from", dest="start", type=int, default=40)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    results = {}
    for _ in range(2):  # alternate, so a slow spell of the machine hits both
        for context in (True, False):
            median, last = run(args.trials, args.start, context)
            results.setdefault(context, []).append(median)
            results[(context, "params")] = last
    with_ctx, without = statistics.median(results[True]), statistics.median(results[False])
    print(f"GPSampler, default space, trials {args.start}-{args.trials}: median s per ask "
          f"{with_ctx:.2f} with Optuna's device context, {without:.2f} without "
          f"({1 - without / with_ctx:.0%} less); same suggestions: "
          f"{results[(True, 'params')] == results[(False, 'params')]}")


if __name__ == "__main__":
    main()
