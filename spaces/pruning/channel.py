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
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
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


@contextlib.contextmanager
def _tolerate_channel_shuffles(unsafe: set[Any]) -> Iterator[None]:
    """torch_pruning 1.6 cannot map channels through a reshape that splits the channel axis
    (ShuffleNet's channel shuffle, ``view(b, groups, c // groups, h, w)``): building the graph
    divides by zero. Such a reshape is recorded in ``unsafe`` instead, and every group that
    crosses it is left unpruned (``_crosses``): the channels inside the branches still go."""
    mapping = importlib.import_module("torch_pruning.dependency.index_mapping")
    original = mapping.update_reshape_index_mapping

    def guarded(graph: Any, node: Any) -> None:
        try:
            original(graph, node)
        except ZeroDivisionError:
            unsafe.add(node)

    mapping.update_reshape_index_mapping = guarded
    try:
        yield
    finally:
        mapping.update_reshape_index_mapping = original


def _crosses(group: Any, unsafe: set[Any]) -> bool:
    return any(dep.source in unsafe or dep.target in unsafe for dep, _ in group)


def _unmappable(model: nn.Module, example_input: Any, roots: list[nn.Module],
                unsafe: set[Any]) -> list[nn.Module]:
    """Layers whose output channels torch_pruning cannot follow (through a channel shuffle, or
    a split after one): they keep their outputs, so no group that crosses them is built."""
    graph = _tp().DependencyGraph().build_dependency(model, example_inputs=example_input)
    out = []
    for layer in roots:
        try:
            fn = graph.get_pruner_of_module(layer).prune_out_channels
            if _crosses(graph.get_pruning_group(layer, fn, [0]), unsafe):
                out.append(layer)
        except (IndexError, ValueError, ZeroDivisionError):
            out.append(layer)
    return out


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
    on the fine-tuned weights (and fresh gradients, for Taylor) before each step.

    Every step's removed channels are recorded (``plan``: per step, the root layer of each
    coupled group and the indices it lost), so a build can replay them without ranking
    (``PruneContext.replay``). ``PruneContext.layer_ratios`` overrides the ratio per module
    subtree (a stage group's scale). After each step the model must still run and return the
    same output shape; a network whose coupling torch_pruning misreads is refused, naming the
    layer that fails, rather than exported half-pruned.
    """

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
        self._names = {m: n for n, m in layers.items()}
        classifier = list(layers.values())[-1]
        modules = dict(model.named_modules())
        ratios = {modules[name]: ratio for name, ratio in ctx.layer_ratios.items()}
        self._unsafe: set[Any] = set()
        with _eval_mode(model), _tolerate_channel_shuffles(self._unsafe):
            self._out_shape = tuple(model(ctx.example_input).shape)
            roots = [m for m in layers.values() if m is not classifier]
            kept = _unmappable(model, ctx.example_input, roots, self._unsafe)
            self._pruner = _pruner_class()(
                model, ctx.example_input, importance=rank.build(), pruning_ratio=sparsity,
                pruning_ratio_dict=ratios or None, iterative_steps=steps,
                ignored_layers=[classifier, *kept], round_to=max(1, ctx.round_to))
        self._prunable = [n for n, m in layers.items() if m is not classifier]
        self.plan: list[list[tuple[str, list[int]]]] = []

    def step(self) -> None:
        with _tolerate_channel_shuffles(self._unsafe):
            done = self._step()
        self.plan.append(done)
        self._model.zero_grad(set_to_none=True)  # stale, wrongly shaped gradients
        self._check_runs()

    def _step(self) -> list[tuple[str, list[int]]]:
        done: list[tuple[str, list[int]]] = []
        if self._ctx.replay is not None:
            graph = self._pruner.DG
            for name, idxs in self._ctx.replay[len(self.plan)]:
                layer = _layers(self._model)[name]
                fn = graph.get_pruner_of_module(layer).prune_out_channels
                graph.get_pruning_group(layer, fn, list(idxs)).prune()
                done.append((name, list(idxs)))
        else:
            if self._rank.needs_loss:
                self._model.zero_grad(set_to_none=True)
                self._ctx.loss_fn(self._model).backward()
            self._pruner.current_step += 1
            for group in self._pruner._prune():  # step(interactive=True), minus its counter
                if _crosses(group, self._unsafe):
                    continue
                dep, idxs = group[0]
                done.append((self._names[dep.target.module], sorted(int(i) for i in idxs)))
                group.prune()
        return done

    def _check_runs(self) -> None:
        last: list[str] = []
        hooks = [m.register_forward_pre_hook(lambda _m, _a, n=n: last.append(n))
                 for n, m in self._model.named_modules() if n]
        try:
            with _eval_mode(self._model), torch.no_grad():
                out = self._model(self._ctx.example_input)
            if tuple(out.shape) != self._out_shape:
                raise ValueError(f"output shape {tuple(out.shape)} != {self._out_shape}")
        except Exception as exc:  # noqa: BLE001 - whatever the broken graph raises
            where = last[-1] if last else "the model's forward"
            raise EdgeshrinkError(
                f"cannot prune this network's channels safely: layer {where!r} fails after "
                f"pruning ({' '.join(str(exc).split())[:160]}); use unstructured pruning"
            ) from None
        finally:
            for hook in hooks:
                hook.remove()

    def details(self) -> dict[str, Any]:
        after = {n: m.weight.shape[0] for n, m in _layers(self._model).items()}
        before_total = sum(self._before[n] for n in self._prunable)
        after_total = sum(after[n] for n in self._prunable)
        return {
            "target_sparsity": self._sparsity,
            "achieved_sparsity": 1 - after_total / before_total if before_total else 0.0,
            "channels": {n: (self._before[n], after[n]) for n in self._prunable
                         if after[n] != self._before[n]},
            "plan": self.plan,
        }
