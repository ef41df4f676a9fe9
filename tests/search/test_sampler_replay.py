"""The sampler benchmark's grid: every candidate once, and every sampler's sample is in it."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgeshrink.search.hypervolume import hypervolume_2d
from edgeshrink.spaces.space import load_space

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "sampler_replay.py"
_spec = importlib.util.spec_from_file_location("sampler_replay", _PATH)
replay_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replay_mod)


@pytest.fixture(scope="module")
def grid():
    space = load_space(replay_mod.SPACE)
    rng = np.random.default_rng(0)
    results = {replay_mod.key_of(space, p): {"accuracy": float(rng.random()),
                                             "latency_ms": float(rng.random())}
               for p in replay_mod.enumerate_space(space)}
    return space, results


def test_reduced_space_enumerates_128_distinct_candidates(grid):
    space, results = grid
    assert len(replay_mod.enumerate_space(space)) == len(results) == 128


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "gp"])
def test_replay_samples_only_grid_points(grid, sampler):
    space, results = grid
    values = replay_mod.replay(space, results, sampler, seed=1, n=12)  # KeyError if off-grid
    assert len(values) == 12
    everything = hypervolume_2d((tuple(v.values()) for v in results.values()), (0.0, 1.0))
    assert 0 < hypervolume_2d(values, (0.0, 1.0)) <= everything
