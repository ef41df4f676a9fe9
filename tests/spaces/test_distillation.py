"""The distillation loss against hand-computed values."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeshrink.spaces.distillation import distillation_loss


def test_distillation_alpha_zero_is_cross_entropy():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.isclose(distillation_loss(s, t, y, 4.0, 0.0), F.cross_entropy(s, y))


def test_distillation_soft_term_matches_hand_computation():
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    y = torch.tensor([0])
    temp = 2.0
    p = np.exp(t.numpy()[0] / temp) / np.exp(t.numpy()[0] / temp).sum()
    q = np.exp(s.numpy()[0] / temp) / np.exp(s.numpy()[0] / temp).sum()
    kl = float((p * np.log(p / q)).sum())
    got = distillation_loss(s, t, y, temp, 1.0).item()
    assert got == pytest.approx(temp**2 * kl, rel=1e-5)
    # Identical logits: no soft loss at all.
    assert distillation_loss(t, t, y, temp, 1.0).item() == pytest.approx(0.0, abs=1e-6)
