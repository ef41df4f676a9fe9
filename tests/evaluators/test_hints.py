import pytest
import torch
from torch import nn

from edgeshrink.evaluators.hints import teacher_hints
from edgeshrink.evaluators.teacher.builtin import TeacherCNN
from edgeshrink.evaluators.training import Hint, TrainSettings, train_distilled
from edgeshrink.spaces.distillation import HintRegressor, hint_loss


class TinyStudent(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        return self.head(self.blocks(x))


def _data(n=128):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_teacher_hints_are_the_last_spatial_map_pooled_to_the_grid():
    torch.manual_seed(0)
    teacher = TeacherCNN(1, 10).eval()
    x, _ = _data(40)
    hints = teacher_hints(teacher, x, batch_size=16)
    # TeacherCNN: 16x16 -> two 2x poolings -> 4x4 map with 4 * 32 channels before the global pool.
    assert hints.shape == (40, 128, 4, 4)
    with torch.no_grad():
        expected = teacher.features[:-2](x[:3])
    torch.testing.assert_close(hints[:3], expected)
    assert teacher_hints(teacher, x) is hints  # cached per teacher and training set


def test_teachers_without_layers_give_no_hints():
    scripted = torch.jit.script(TinyStudent().eval())
    x, _ = _data(8)
    assert teacher_hints(scripted, x) is None

    class LogitsOnly(nn.Module):  # like an ONNX teacher: no sub-modules to hook
        def forward(self, x):
            return x.flatten(1)[:, :10]

    assert teacher_hints(LogitsOnly(), x) is None


def test_hint_loss_is_zero_on_a_perfect_match_and_scale_free():
    reg = HintRegressor(3, 3, 2)
    with torch.no_grad():
        reg.proj.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    feats = torch.randn(4, 3, 2, 2)
    assert hint_loss(feats, feats, reg).item() == pytest.approx(0.0, abs=1e-7)
    # Scaling teacher and student maps together leaves the normalised loss unchanged.
    target = torch.randn(4, 3, 2, 2)
    assert hint_loss(10 * feats, 10 * target, reg).item() == pytest.approx(
        hint_loss(feats, target, reg).item(), rel=1e-5)


def test_zero_hint_weight_trains_exactly_like_no_hint():
    x, y = _data()
    hints = torch.randn(len(x), 16, 4, 4)
    runs = []
    for hint in (None, Hint(hints, 0.0)):
        torch.manual_seed(1)
        model = TinyStudent()
        train_distilled(model, x, y, None, epochs=1, settings=TrainSettings(), seed=0, hint=hint)
        runs.append(model.state_dict())
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key])


@pytest.mark.slow
def test_hint_training_pulls_student_features_towards_the_teacher():
    x, y = _data(256)
    torch.manual_seed(0)
    # Local energy of oriented filters: not a linear read-out of a random ReLU conv's features.
    teacher = nn.Conv2d(1, 6, 3, stride=2, padding=1)
    with torch.no_grad():
        targets = nn.functional.adaptive_avg_pool2d(teacher(x) ** 2, 4)

    def fitted_hint_loss(model):  # the best a fresh regressor can do on the student's features
        with torch.no_grad():
            feats = model.blocks(x)
        reg = HintRegressor(feats.shape[1], 6, 4)
        opt = torch.optim.Adam(reg.parameters(), lr=0.05)
        for _ in range(200):
            opt.zero_grad()
            loss = hint_loss(feats, targets, reg)
            loss.backward()
            opt.step()
        return loss.item()

    losses = {}
    for weight in (0.0, 5.0):
        torch.manual_seed(0)
        model = TinyStudent()
        train_distilled(model, x, y, None, epochs=15, seed=0, hint=Hint(targets, weight),
                        settings=TrainSettings(batch_size=32, lr=0.03))
        losses[weight] = fitted_hint_loss(model)
    assert losses[5.0] < 0.7 * losses[0.0], losses
    assert set(model.state_dict()) == set(TinyStudent().state_dict())  # regressor not kept
