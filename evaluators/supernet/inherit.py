"""What a trial's student takes from a trained supernet: a copy of its slice, then fresh
BatchNorm statistics (the supernet's shared statistics fit no single sub-network)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.spaces.blocks import Student

if TYPE_CHECKING:  # model.py imports this module: only the type, to avoid a cycle
    from edgeshrink.evaluators.supernet.model import SuperNet


def inherit_weights(student: nn.Module, supernet: SuperNet) -> None:
    """Copy the supernet's slices into a freshly built ``build_student(candidate, ...)``."""
    if not isinstance(student, Student):
        raise EdgeshrinkError(f"inherit_weights needs a Student from build_student; got "
                              f"{type(student).__name__}")
    with torch.no_grad():
        state = {k: v.detach().clone() for k, v in supernet.sub_state(student).items()}
    student.load_state_dict(state)


def recalibrate_bn(model: nn.Module, x: torch.Tensor, batches: int, batch_size: int,
                   seed: int = 0) -> None:
    """Fresh BatchNorm statistics from a few training batches (torch's SWA ``update_bn``:
    running averages reset, then a cumulative mean over the batches); the model ends in eval."""
    if batches <= 0:
        return
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    loader = [x[order[i : i + batch_size]]
              for i in range(0, min(len(x), batches * batch_size), batch_size)]
    update_bn(loader, model)
    model.eval()


def prepare_inherited(student: Student, supernet: SuperNet, x: torch.Tensor, seed: int = 0) -> None:
    """What weight-sharing mode does to a trial's fresh student before its short fine-tune."""
    inherit_weights(student, supernet)
    settings = supernet.settings
    recalibrate_bn(student, x, settings.bn_batches, settings.batch_size, seed)
