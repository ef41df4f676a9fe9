"""Structured channel pruning with torch_pruning's DepGraph: channels are physically removed, so
the exported file has narrower convs and fewer MACs on every runtime (no sparse kernels needed).

DepGraph traces the model once and groups every channel that must go together: an inverted
residual's expansion outputs with the depthwise conv, its BatchNorm, the SE gate's outputs and
the projection's inputs; every tensor tied by a residual add (the stem and all blocks that add
onto it). Activations (ReLU6, hard-swish) and SE's multiply are element-wise and follow along.
The model input channels are never pruned; the last conv/linear layer (the classifier) keeps its
outputs (``ignored_layers``), only its inputs shrink with the head.

``sparsity`` is the fraction of channels removed from every prunable group (local, not global
ranking): a group of ``C`` channels keeps ``floor(C * (1 - sparsity))``, rounded down to a
multiple of ``round_to`` but never below ``min(round_to, C)`` channels, so no conv ends empty.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from edgeshrink.core.errors import EdgeshrinkError

if TYPE_CHECKING:
    from edgeshrink.spaces.pruning.methods import PruneContext


def _tp() -> Any:
    import torch_pruning  # deferred: 2 s of imports that only channel pruning needs

    return torch_pruning


@dataclass(frozen=True)
class ChannelImportance:
    """How channels are ranked; the lowest-ranked of each group are removed."""

    summary: str
    needs_loss: bool  # needs ``PruneContext.loss_fn`` for gradients
    build: Callable[[], Any]  # a torch_pruning importance


# Magnitude scores sum |w|^p of a channel's weights in every conv / linear / BatchNorm of its
# group (its output rows and the next layers' input columns); Taylor sums |w * dL/dw| over the
# group's conv / linear weights (Molchanov et al. 2019). Per layer, then averaged over the group.
IMPORTANCES: dict[str, ChannelImportance] = {
    "l1": ChannelImportance("sum of |w|", False,
                            lambda: _tp().importance.MagnitudeImportance(p=1)),
    "l2": ChannelImportance("sum of w^2", False,
                            lambda: _tp().importance.MagnitudeImportance(p=2)),
    "taylor": ChannelImportance("sum of |w * dL/dw| (first-order Taylor)", True,
                                lambda: _tp().importance.TaylorImportance()),
}


@functools.cache
def _pruner_class() -> type:
    tp = _tp()

    class KeepSomeChannels(tp.pruner.MetaPruner):
        """torch_pruning's ``round_to`` rounds the kept channels down to a multiple and can reach
        0, and without it ``int(C * (1 - ratio))`` can be 0 too (a 2-channel SE squeeze at 60%);
        it then skips the group, which keeps every channel. Keep ``min(round_to, C)`` instead."""

        def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
            keep = current_channels - n_pruned
            keep = max(keep - keep % round_to, min(round_to, current_channels))
            return current_channels - keep

    return KeepSomeChannels


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Trace in eval mode, so building the graph does not move BatchNorm's running stats."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class ChannelPruner:
    """Removes channels over ``steps`` steps (torch_pruning's linear schedule), re-ranking them
    on the fine-tuned weights (and fresh gradients, for Taylor) before each step."""

    def __init__(self, model: nn.Module, sparsity: float, importance: str, steps: int,
                 ctx: PruneContext | None):
        if ctx is None:
            raise EdgeshrinkError("pruning 'channel' needs an example input: call prune_model "
                                  "with a PruneContext")
        rank = IMPORTANCES[importance]
        if rank.needs_loss and ctx.loss_fn is None:
            raise EdgeshrinkError(f"importance {importance!r} needs gradients: PruneContext "
                                  "field 'loss_fn' must be set")
        self._model, self._ctx, self._rank, self._sparsity = model, ctx, rank, sparsity
        layers = _layers(model)
        self._before = {n: m.weight.shape[0] for n, m in layers.items()}
        classifier = list(layers.values())[-1]
        with _eval_mode(model):
            self._pruner = _pruner_class()(
                model, ctx.example_input, importance=rank.build(), pruning_ratio=sparsity,
                iterative_steps=steps, ignored_layers=[classifier],
                round_to=max(1, ctx.round_to))
        self._prunable = [n for n, m in layers.items() if m is not classifier]

    def step(self) -> None:
        if self._rank.needs_loss:
            self._model.zero_grad(set_to_none=True)
            self._ctx.loss_fn(self._model).backward()
        self._pruner.step()
        self._model.zero_grad(set_to_none=True)  # stale, wrongly shaped gradients

    def details(self) -> dict[str, Any]:
        after = {n: m.weight.shape[0] for n, m in _layers(self._model).items()}
        before_total = sum(self._before[n] for n in self._prunable)
        after_total = sum(after[n] for n in self._prunable)
        return {
            "target_sparsity": self._sparsity,
            "achieved_sparsity": 1 - after_total / before_total if before_total else 0.0,
            "channels": {n: (self._before[n], after[n]) for n in self._prunable
                         if after[n] != self._before[n]},
        }
