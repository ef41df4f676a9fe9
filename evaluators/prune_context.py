"""What a trial lends the pruner, for either family: fine-tuning by distillation from the cached
teacher logits after each pruning step, and the same loss for Taylor importance's gradients."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.training import TrainSettings, train_distilled
from edgeshrink.spaces.distillation import distillation_loss
from edgeshrink.spaces.pruning.methods import PruneContext


class Distils(Protocol):
    """Both candidate families carry their distillation temperature and alpha."""

    temperature: float
    alpha: float


def distilled_prune_context(candidate: Distils, data: DataSplits, teacher: Teacher,
                            settings: TrainSettings, seed: int, *, lr_scale: float,
                            round_to: int, **extra: Any) -> PruneContext:
    """Fine-tunes ``settings.finetune_epochs`` per step at ``lr_scale`` times the learning rate
    (none when that is 0); ``extra`` are further PruneContext fields (layer ratios, replay)."""
    x, y, logits = data.train.x, data.train.y, teacher.train_logits
    steps = iter(range(1, 1_000))

    def finetune(model: torch.nn.Module) -> None:
        train_distilled(model, x, y, logits, epochs=settings.finetune_epochs, settings=settings,
                        temperature=candidate.temperature, alpha=candidate.alpha,
                        seed=seed + next(steps), lr=settings.lr * lr_scale,
                        teacher=teacher.model)

    def loss_fn(model: torch.nn.Module) -> torch.Tensor:
        n = min(len(x), 4 * settings.batch_size)
        return distillation_loss(model(x[:n]), logits[:n], y[:n], candidate.temperature,
                                 candidate.alpha)

    return PruneContext(example_input=x[:1], loss_fn=loss_fn,
                        finetune=finetune if settings.finetune_epochs > 0 else None,
                        steps=settings.prune_steps, round_to=round_to, **extra)
