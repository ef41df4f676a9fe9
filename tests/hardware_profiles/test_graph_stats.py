"""Graph statistics of an exported file, checked by hand."""

import math

import onnx
import torch
from torch import nn

from edgeshrink.hardware_profiles.graph_stats import graph_stats


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
