"""Rebuild the user's model from its spec: the architecture, then its weights, then a check that
it runs on the data's images and returns one logit per class. Shared with ``--teacher``."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.spaces.base_model.spec import ModelSpec


def first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


class GreyToRGB(nn.Module):
    """Repeat a one-channel image to three, for a model that expects RGB."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.expand(-1, 3, -1, -1))


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict read with ``weights_only=True``; unwraps the common checkpoint wrappers
    (``state_dict``, ``model``, ``model_state_dict``) and DataParallel's ``module.`` prefix."""
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling refusals and damaged files alike
        raise EdgeshrinkError(f"cannot load state dict {path} with weights_only=True: "
                              f"{first_line(exc)[:160]}") from None
    if isinstance(state, dict):
        wrapped = [k for k in ("state_dict", "model", "model_state_dict")
                   if isinstance(state.get(k), dict)]
        state = state[wrapped[0]] if wrapped else state
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise EdgeshrinkError(f"{path} is not a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def head_weight(model: nn.Module) -> str | None:
    """Name of the classifier's weight: the last Linear (or, failing that, the last Conv2d)."""
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    conv = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    names = linear or conv
    return f"{names[-1]}.weight" if names else None


def load_weights(model: nn.Module, path: str, label: str, num_classes: int,
                 what: str = "model") -> None:
    """Load a state dict strictly; a mismatch names the first missing or unexpected key."""
    state = read_state_dict(path)
    head = head_weight(model)
    if head in state and state[head].shape[0] != num_classes:
        raise classes_mismatch(label, state[head].shape[0], num_classes, what)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = (f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}")
        counts = f" ({len(missing)} missing, {len(unexpected)} unexpected)"
        raise EdgeshrinkError(f"{path} does not fit {label}: {what}{counts}")
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        key = wrong[0]
        raise EdgeshrinkError(f"{path} does not fit {label}: {key!r} has shape "
                              f"{tuple(state[key].shape)}, the model {tuple(own[key].shape)}")
    model.load_state_dict(state)


def classes_mismatch(label: str, outputs: int, classes: int,
                     what: str = "model") -> EdgeshrinkError:
    return EdgeshrinkError(f"{what} {label} outputs {outputs} logits per image but the data has "
                           f"{classes} classes; pass a model trained on these classes")


def call_factory(factory: str) -> nn.Module:
    """Import ``module.path:callable`` and call it with no arguments."""
    module_name, _, name = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
        raise EdgeshrinkError(f"cannot import {module_name!r} for --model {factory}: "
                              f"{first_line(exc)[:200]}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise EdgeshrinkError(f"module {module_name!r} has no callable {name!r} (--model "
                              f"{factory})")
    try:
        model = fn()
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise EdgeshrinkError(f"{factory}() failed: {type(exc).__name__}: "
                              f"{first_line(exc)[:200]}") from None
    if not isinstance(model, nn.Module):
        raise EdgeshrinkError(f"{factory}() returned {type(model).__name__}, not a "
                              "torch.nn.Module")
    return model


def build_model(spec: ModelSpec, num_classes: int, what: str = "model") -> nn.Module:
    """The architecture with the user's weights, in eval mode (no input adapter yet)."""
    if spec.form == "torchvision":
        import torchvision

        model = torchvision.models.get_model(spec.arch, weights=None, num_classes=num_classes)
    else:
        model = call_factory(str(spec.factory))
    if spec.weights:
        load_weights(model, spec.weights, spec.label, num_classes, what)
    return model.eval()


def fit_input(model: nn.Module, sample: torch.Tensor, num_classes: int, label: str,
              what: str = "model") -> nn.Module:
    """The model, wrapped in :class:`GreyToRGB` if it wants three channels and the data has
    one; checks it returns one logits tensor ``[batch, classes]``."""
    tries = [model, GreyToRGB(model)] if sample.shape[1] == 1 else [model]
    errors: list[Exception] = []
    for candidate in tries:
        try:
            with torch.no_grad():
                out = candidate.eval()(sample)
        except Exception as exc:  # noqa: BLE001 - any framework's shape complaint
            errors.append(exc)
            continue
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise EdgeshrinkError(f"{what} {label} must return one logits tensor "
                                  f"[batch, classes]; it returned {type(out).__name__}")
        if out.shape[1] != num_classes:
            raise classes_mismatch(label, out.shape[1], num_classes, what)
        return candidate
    shape = ", ".join(str(d) for d in sample.shape[1:])
    raise EdgeshrinkError(f"{what} {label} cannot run on the data's images [batch, {shape}]: "
                          f"{first_line(errors[0])[:200]}")
