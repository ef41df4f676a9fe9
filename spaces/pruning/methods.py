"""Pruning methods behind a registry, and :func:`prune_model`, the one entry point a trial calls.

Methods (``Candidate.pruning``):

- ``global_magnitude``: unstructured; one |w| threshold over all conv/linear weights.
- ``layer_magnitude``: unstructured; the same fraction of every conv/linear layer.
- ``channel``: structured; removes whole channels (see :mod:`.channel`), ranked by
  ``Candidate.importance`` (:data:`IMPORTANCES`). ``sparsity`` is the channel fraction removed.
- ``semi_2_4``: 2:4 semi-structured (see :mod:`.semi_structured`); ``sparsity`` is ignored.

Unstructured and 2:4 zeros only pay off where a profile's kernels exploit them (or in a sparse
storage format); channel pruning shrinks the dense graph itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import torch
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import IMPORTANCE_NAMES, PRUNING_NAMES
from edgeshrink.spaces.pruning.channel import IMPORTANCES, ChannelImportance, ChannelPruner
from edgeshrink.spaces.pruning.magnitude import MagnitudePruner, global_magnitude
from edgeshrink.spaces.pruning.masks import make_permanent, prunable_parameters, weight_sparsity
from edgeshrink.spaces.pruning.semi_structured import SemiStructuredPruner

__all__ = [
    "IMPORTANCES", "PRUNING_METHODS", "ChannelImportance", "PruneContext", "PruneReport",
    "PruningMethod", "global_magnitude", "make_permanent", "prunable_parameters", "prune_model",
    "weight_sparsity",
]


@dataclass(frozen=True)
class PruneContext:
    """What a trial lends the pruner.

    ``loss_fn(model)``: a scalar loss on a few training batches (Taylor importance backpropagates
    it). ``finetune(model)``: runs after each of the ``steps`` steps; it must build its optimizer
    on each call, since channel pruning replaces parameters with narrower ones. ``round_to``:
    channel pruning keeps channel counts in multiples of it (a profile's channel block).
    """

    example_input: torch.Tensor
    loss_fn: Callable[[nn.Module], torch.Tensor] | None = None
    finetune: Callable[[nn.Module], None] | None = None
    steps: int = 2
    round_to: int = 1
    # channel: ratio per module subtree (name -> fraction removed), overriding ``sparsity``
    layer_ratios: dict[str, float] = field(default_factory=dict)
    # channel: the ``PruneReport.plan`` of an earlier run, replayed without ranking
    replay: list[list[tuple[str, list[int]]]] | None = None


@dataclass
class PruneReport:
    """What pruning did; plain data (``dataclasses.asdict``) for a trial's metrics."""

    method: str
    importance: str | None  # channel ranking; None for methods that do not rank channels
    requested_sparsity: float  # the argument (ignored by semi_2_4)
    # Share of conv/linear weights the method aims to zero (channel: share of channels removed
    # from each prunable group; semi_2_4: half of the eligible layers' weights over all weights).
    target_sparsity: float
    # Zero conv/linear weights after pruning; channel: share of prunable channels removed.
    achieved_sparsity: float
    steps: int
    params_before: int  # conv/linear weight elements
    params_after: int
    nonzero_after: int
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)  # out channels before/after
    semi_structured_layers: list[str] = field(default_factory=list)  # follow 2:4
    dense_layers: list[str] = field(default_factory=list)  # semi_2_4: not eligible, left dense
    # channel: per step, (root layer, removed output indices) of each group; replayable
    plan: list[list[tuple[str, list[int]]]] = field(default_factory=list)


class Pruner(Protocol):
    """One pruning run: ``step()`` advances the schedule by one of its steps."""

    def step(self) -> None: ...

    def details(self) -> dict[str, Any]: ...


Start = Callable[[nn.Module, float, str, int, PruneContext | None], Pruner]


@dataclass(frozen=True)
class PruningMethod:
    summary: str
    start: Start  # (model, sparsity, importance, steps, ctx) -> Pruner
    ranks_channels: bool = False  # uses Candidate.importance
    uses_sparsity: bool = True

    def __call__(self, model: nn.Module, sparsity: float, ctx: PruneContext | None = None,
                 importance: str = "l1") -> None:
        """One step without fine-tuning; masks stay attached until :func:`make_permanent`."""
        if sparsity > 0 or not self.uses_sparsity:
            self.start(model, sparsity, importance, 1, ctx).step()


def _magnitude(per_layer: bool, model: nn.Module, sparsity: float, _importance: str, steps: int,
               _ctx: PruneContext | None) -> Pruner:
    return MagnitudePruner(model, sparsity, steps, per_layer=per_layer)


def _semi_2_4(model: nn.Module, _sparsity: float, _importance: str, steps: int,
              _ctx: PruneContext | None) -> Pruner:
    return SemiStructuredPruner(model, steps)


PRUNING_METHODS: dict[str, PruningMethod] = {
    "global_magnitude": PruningMethod("unstructured, one global |w| threshold",
                                      partial(_magnitude, False)),
    "layer_magnitude": PruningMethod("unstructured, the same fraction in every layer",
                                     partial(_magnitude, True)),
    "channel": PruningMethod("structured: removes channels", ChannelPruner, ranks_channels=True),
    "semi_2_4": PruningMethod("2 of every 4 input weights zero (sparsity ignored)", _semi_2_4,
                              uses_sparsity=False),
}

assert tuple(PRUNING_METHODS) == PRUNING_NAMES and tuple(IMPORTANCES) == IMPORTANCE_NAMES


def _check(method: str, sparsity: float, importance: str, ctx: PruneContext) -> PruningMethod:
    if method not in PRUNING_METHODS:
        raise EdgeshrinkError(f"pruning method {method!r} is unknown: expected one of "
                              f"{sorted(PRUNING_METHODS)}")
    if importance not in IMPORTANCES:
        raise EdgeshrinkError(f"importance {importance!r} is unknown: expected one of "
                              f"{sorted(IMPORTANCES)}")
    if not 0.0 <= sparsity < 1.0:
        raise EdgeshrinkError(f"sparsity must be in [0, 1); got {sparsity!r}")
    if ctx.steps < 1 or ctx.round_to < 1:
        raise EdgeshrinkError(f"PruneContext fields 'steps' and 'round_to' must be >= 1; got "
                              f"steps={ctx.steps}, round_to={ctx.round_to}")
    return PRUNING_METHODS[method]


def _weights(model: nn.Module) -> tuple[int, int]:
    ws = [m.weight for m, _ in prunable_parameters(model)]
    return sum(w.numel() for w in ws), sum(int(torch.count_nonzero(w)) for w in ws)


def prune_model(model: nn.Module, method: str, sparsity: float, importance: str,
                ctx: PruneContext) -> PruneReport:
    """Prune ``model`` in place over ``ctx.steps`` steps, fine-tuning after each one, and make
    masks permanent. ``sparsity == 0`` (for methods that use it) prunes and fine-tunes nothing.
    """
    spec = _check(method, sparsity, importance, ctx)
    params_before, _ = _weights(model)
    details: dict[str, Any] = {"target_sparsity": 0.0}
    if sparsity > 0 or not spec.uses_sparsity:
        pruner = spec.start(model, sparsity, importance, ctx.steps, ctx)
        for _ in range(ctx.steps):
            pruner.step()
            if ctx.finetune is not None:
                ctx.finetune(model)
        make_permanent(model)
        details = pruner.details()
    params_after, nonzero_after = _weights(model)
    details.setdefault("achieved_sparsity", weight_sparsity(model))
    return PruneReport(
        method=method,
        importance=importance if spec.ranks_channels else None,
        requested_sparsity=sparsity,
        steps=ctx.steps,
        params_before=params_before,
        params_after=params_after,
        nonzero_after=nonzero_after,
        **details,
    )
