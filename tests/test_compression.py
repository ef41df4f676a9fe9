import math

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeshrink.hardware_profiles.graph_stats import graph_stats
from edgeshrink.spaces.distillation import distillation_loss
from edgeshrink.spaces.pruning.methods import global_magnitude, make_permanent, weight_sparsity


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


def test_magnitude_pruning_hits_the_target_and_is_permanent():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Flatten(), nn.Linear(16 * 6 * 6, 10))
    global_magnitude(model, 0.6)
    make_permanent(model)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())
    assert weight_sparsity(model) == pytest.approx(0.6, abs=0.001)
    # Magnitude pruning: every surviving weight is at least as large as every pruned one.
    w = torch.cat([model[0].weight.flatten(), model[2].weight.flatten()])
    assert w[w != 0].abs().min() > 0


def test_graph_stats_hand_checked(tmp_path):
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 16*16*4 outputs * 1*3*3 = 9216 MACs, 36+4 params
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise: 1024 outputs * 9 = 9216 MACs
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),  # 10240 MACs, 10240 + 10 params
    )
    with torch.no_grad():
        model[3].weight[:, :100] = 0
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 16, 16),), str(path), dynamo=False)
    onnx.checker.check_model(str(path))
    stats = graph_stats(path)
    assert stats.macs == 9216 + 9216 + 10240
    assert stats.params == (36 + 4) + (36 + 4) + (10240 + 10)
    assert stats.nonzero_params == stats.params - 10 * 100
    assert math.isclose(stats.nonzero_params / stats.params, 1 - 1000 / stats.params)
