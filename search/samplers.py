"""Sampler registry: each entry builds a seeded Optuna sampler."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from edgeshrink.core.errors import EdgeshrinkError


def _tpe(seed: int, budget: int) -> optuna.samplers.BaseSampler:
    # Multi-objective TPE; a short random start so small budgets still get model-guided trials.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=min(10, max(4, budget // 4)), multivariate=True
    )


def _nsga2(seed: int, budget: int) -> optuna.samplers.BaseSampler:
    # A population of 50 (Optuna's default) would make a 40-trial search pure random.
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, budget // 4)))


def _random(seed: int, budget: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _gp(seed: int, budget: int) -> optuna.samplers.BaseSampler:
    # Gaussian process with log expected hypervolume improvement: the best front within 25
    # trials on the enumerated space (BENCHMARKS.md). About 1 s of sampling per trial at 80
    # trials on 2 cores, a fraction of one trial. A short random start: 5 for 50 trials.
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(4, min(10, budget // 10)))


SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "nsga2": _nsga2,
    "random": _random,
    "gp": _gp,
}


def make_sampler(name: str, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise EdgeshrinkError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed, budget)
