"""Training the supernet once, by the sandwich rule, and caching it on disk.

Each step sums the gradients of the largest, the smallest and a few random sub-networks,
distilled from the teacher's cached logits as a trial is. The result is keyed by everything that
changes it (space, data, teacher, supernet settings, seed) so every trial of a study, and every
worker, reuses one file.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from edgeshrink.core.atomic import atomic_path, compute_once
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.supernet.model import SuperNet, SupernetSettings
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.training import TrainingDiverged
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.distillation import distillation_loss
from edgeshrink.spaces.enumerate import midpoint, sample_subnet
from edgeshrink.spaces.space import SearchSpace

CACHE_FORMAT = 2  # bump when the supernet's layout or training changes
_TRIAL_ONLY = ("finetune_epochs", "bn_batches")  # settings that leave the supernet unchanged


def _sandwich(supernet: SuperNet, rng: random.Random, random_subnets: int) -> Iterator[Candidate]:
    space, options = supernet.space, supernet.options
    yield sample_subnet(space, options, rng, "largest")
    yield sample_subnet(space, options, rng, "smallest")
    for _ in range(random_subnets):
        yield sample_subnet(space, options, rng)


def fit_supernet(supernet: SuperNet, data: DataSplits, teacher_logits: torch.Tensor,
                 settings: SupernetSettings, seed: int = 0, device: str = "cpu") -> float:
    """Sandwich-rule distillation in place (AdamW, cosine schedule) on ``device``; returns the
    last epoch's mean loss of the largest network. The supernet ends on the CPU."""
    try:
        return _fit(supernet, data, teacher_logits, settings, seed, device)
    finally:
        supernet.to("cpu").eval()


def _fit(supernet: SuperNet, data: DataSplits, teacher_logits: torch.Tensor,
         settings: SupernetSettings, seed: int, device: str) -> float:
    x, y = data.train.x, data.train.y
    supernet.to(device)
    space = supernet.space
    temperature, alpha = midpoint(space, "temperature"), midpoint(space, "alpha")
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(supernet.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)
    steps = settings.epochs * math.ceil(len(x) / settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    supernet.train()
    largest_loss = float("nan")
    for _ in range(settings.epochs):
        total = 0.0
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            opt.zero_grad(set_to_none=True)
            for k, candidate in enumerate(_sandwich(supernet, rng, settings.random_subnets)):
                loss = distillation_loss(supernet(x[idx].to(device), candidate),
                                         teacher_logits[idx].to(device), y[idx].to(device),
                                         temperature, alpha)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"supernet training diverged: loss {loss.item()}")
                loss.backward()
                total += loss.item() * len(idx) if k == 0 else 0.0
            opt.step()
            sched.step()
        largest_loss = total / len(x)
    supernet.eval()
    return largest_loss


def _cache_key(space: SearchSpace, data: DataSplits, teacher: Teacher,
               settings: SupernetSettings, seed: int) -> str:
    blob = json.dumps({
        "format": CACHE_FORMAT,
        "space": json.loads(json.dumps(asdict(space), default=list)),
        "data": data.fingerprint(),
        "teacher": hashlib.sha256(teacher.train_logits.numpy().tobytes()).hexdigest()[:16],
        "settings": {k: v for k, v in asdict(settings).items() if k not in _TRIAL_ONLY},
        "seed": seed,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_supernet(space: SearchSpace, data: DataSplits, teacher: Teacher,
                   settings: SupernetSettings, cache_dir: Path, seed: int = 0,
                   device: str = "cpu") -> SuperNet:
    """The space's supernet, trained once and cached in ``cache_dir`` (keyed by space, data,
    teacher, settings and seed); a file lock makes concurrent first starts train it once."""
    torch.manual_seed(seed)  # the initial weights too: the cached file is keyed by the seed
    supernet = SuperNet(space, data.in_channels, data.num_classes)
    supernet.settings = settings
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"supernet-{_cache_key(space, data, teacher, settings, seed)}.pt"

    def load() -> SuperNet | None:
        if not path.is_file():
            return None
        stored = torch.load(path, weights_only=True)
        supernet.load_state_dict(stored["state"])
        supernet.train_seconds = stored["seconds"]
        return supernet.eval()

    def train() -> SuperNet:
        start = time.perf_counter()
        fit_supernet(supernet, data, teacher.train_logits, settings, seed, device)
        supernet.train_seconds = time.perf_counter() - start
        supernet.trained_now = True
        with atomic_path(path) as tmp:
            torch.save({"state": supernet.state_dict(), "seconds": supernet.train_seconds}, tmp)
        return supernet

    return compute_once(cache_dir / ".supernet.lock", load, train)
