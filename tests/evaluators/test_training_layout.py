"""Channels-last training: the same training, a faster layout, and the layout is undone."""

import pytest
import torch

from edgeshrink.evaluators.training import TrainSettings, train_distilled
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.candidate import Candidate, parse_arch


def _student() -> torch.nn.Module:
    width, stages = parse_arch("w0.5:ir_k5_e4_se_hs_r1_s1_c16,ds_k3_r1_s2_c24,ir_k7_e1_r1_s2_c32,"
                               "skip_s1_c64")
    cand = Candidate(width_mult=width, stages=stages, temperature=4.0, alpha=0.5, sparsity=0.0,
                     precision="fp32")
    torch.manual_seed(0)
    return build_student(cand, 1, 10)


@pytest.mark.slow
def test_channels_last_trains_the_same_model_and_hands_it_back_contiguous():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(192, 1, 16, 16, generator=gen), torch.randint(0, 10, (192,), generator=gen)
    logits = torch.randn(192, 10, generator=gen)
    models, losses = [], []
    for channels_last in (False, True):
        model = _student()
        losses.append(train_distilled(model, x, y, logits, epochs=2, temperature=4.0, alpha=0.5,
                                      settings=TrainSettings(batch_size=32,
                                                             channels_last=channels_last)))
        models.append(model)
    # Same arithmetic in another summation order: the losses agree closely, not bitwise.
    assert abs(losses[0] - losses[1]) <= 0.05 * losses[0]
    with torch.no_grad():
        a, b = models[0](x[:64]), models[1](x[:64])
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.9


def test_the_layout_is_undone_after_training():
    """A full 3x3 conv over 8 channels is where NCHW and NHWC weights differ in memory;
    pruning and export must get ordinary contiguous weights back."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 10))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 16, 16, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    seen = []
    train_distilled(model, x, y, None, epochs=1, settings=TrainSettings(batch_size=32),
                    after_epoch=lambda _e: seen.append(model[2].weight.is_contiguous()))
    assert seen == [False]  # it did train in channels-last
    assert all(p.is_contiguous() for p in model.parameters())
