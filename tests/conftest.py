import shutil
from pathlib import Path

import pytest
import torch

from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.evaluators.teacher.builtin import load_or_train_teacher

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits16():
    return load_digits_splits(16)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, digits16) -> Path:
    """The teacher is trained once for the whole test session; run dirs get a copy."""
    cache = tmp_path_factory.mktemp("teacher_cache") / "teacher"
    load_or_train_teacher(digits16, cache, seed=0)
    return cache


@pytest.fixture
def seeded_run_dir(tmp_path, teacher_dir) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(teacher_dir, run_dir / "teacher")
    return run_dir


# Fixtures that train a model or run a search; every test using one (directly or through another
# fixture) is slow, whichever test happens to pay for the fixture first.
TRAINING_FIXTURES = frozenset({"teacher_dir", "searched", "trained"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
