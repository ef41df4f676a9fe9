"""Distillation losses: soft targets at temperature T (Hinton et al. 2015) and feature hints
(FitNets, Romero et al. 2015) from an intermediate teacher layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones.
    """
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student_logits, labels)
    return alpha * (t * t) * soft + (1.0 - alpha) * hard


class HintRegressor(nn.Module):
    """FitNets regressor: a 1x1 conv maps the student's features to the teacher's channels.

    It lives only during training (the exported student never carries it), and pools the
    student's map to the teacher's grid so students of any depth or stride can take a hint.
    """

    def __init__(self, student_channels: int, teacher_channels: int, grid: int):
        super().__init__()
        self.proj = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
        self.grid = grid

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.proj(features), self.grid)


def hint_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, regressor: HintRegressor
) -> torch.Tensor:
    """Mean squared error to the teacher's features, divided by their variance.

    The division makes the loss scale-free, so one ``hint_weight`` range suits any teacher.
    """
    target_var = teacher_features.var().clamp_min(1e-8)
    return F.mse_loss(regressor(student_features), teacher_features) / target_var
