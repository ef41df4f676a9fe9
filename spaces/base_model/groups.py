"""Stage groups of an arbitrary network: the unit a base candidate's per-group pruning scale and
precision apply to.

A network's stages are found from its module tree, not from its class: the *units* are the
children of the module that holds more than 80% of the convolutions, descended while one child
does (``features`` of a MobileNet, ``trunk_output`` of a RegNet); its siblings that hold
convolutions are units too (a ResNet's ``conv1``, ``layer1``..``layer4``). Units are then split
into at most ``n`` contiguous groups of about equal convolution count, in definition order, which
torchvision's classifiers and most user models share with their forward order.
The last conv/linear layer (the classifier) belongs to no group: it keeps its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

DEFAULT_GROUPS = 4


def _convs(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in module.modules())


def stage_units(model: nn.Module) -> list[str]:
    """Module names (dotted, from ``model``) of the network's stage units, in order."""
    total = _convs(model)
    prefix, module, outer = "", model, []
    while True:
        children = list(module.named_children())
        big = [(n, c) for n, c in children if _convs(c) * 5 > total * 4 and list(c.children())]
        if not big:
            break
        name, child = big[0]
        at = [n for n, _ in children].index(name)
        outer.append(([f"{prefix}{n}" for n, c in children[:at] if _convs(c)],
                      [f"{prefix}{n}" for n, c in children[at + 1:] if _convs(c)]))
        prefix, module = f"{prefix}{name}.", child
    inner = [f"{prefix}{n}" for n, c in module.named_children() if _convs(c)]
    for before, after in reversed(outer):
        inner = [*before, *inner, *after]
    return inner


@dataclass(frozen=True)
class StageGroup:
    index: int
    units: tuple[str, ...]  # module names

    def holds(self, layer_name: str) -> bool:
        return any(layer_name == u or layer_name.startswith(u + ".") for u in self.units)


def stage_groups(model: nn.Module, n: int = DEFAULT_GROUPS) -> list[StageGroup]:
    """At most ``n`` contiguous groups of units, balanced by convolution count."""
    units = stage_units(model)
    modules = dict(model.named_modules())
    weights = [max(1, _convs(modules[u])) for u in units]
    n = max(1, min(n, len(units)))
    total, groups, current, done = sum(weights), [], [], 0
    for unit, w in zip(units, weights, strict=True):
        current.append(unit)
        done += w
        left_units = len(units) - len([u for g in groups for u in g]) - len(current)
        need = n - len(groups) - 1  # groups still to open after this one
        if need > 0 and (done >= total * (len(groups) + 1) / n or left_units == need):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return [StageGroup(i, tuple(g)) for i, g in enumerate(groups)]


def group_of_layer(groups: list[StageGroup], layer_name: str) -> int | None:
    return next((g.index for g in groups if g.holds(layer_name)), None)
