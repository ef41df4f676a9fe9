"""Training devices, mixed precision, out-of-memory and augmentation, all checked on the CPU:
CI has no GPU, so the CUDA choices are driven through torch's own availability queries."""

import pytest
import torch
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators import device as dev
from edgeshrink.evaluators.augment import AUGMENTS, augmentation, default_augment
from edgeshrink.evaluators.settings import TrainSettings
from edgeshrink.evaluators.training import train_distilled
from edgeshrink.search.cli import main
from edgeshrink.search.options import AUGMENT_NAMES


def _gpus(monkeypatch, count: int, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def test_auto_is_the_cpu_without_cuda_and_cuda_is_refused(monkeypatch):
    _gpus(monkeypatch, 0)
    assert dev.resolve_device("auto") == "cpu" and dev.resolve_device("cpu") == "cpu"
    with pytest.raises(EdgeshrinkError, match=r"--device cuda: torch sees no CUDA GPU here"):
        dev.resolve_device("cuda")
    with pytest.raises(EdgeshrinkError, match=r"--device cuda:1: torch sees no CUDA GPU"):
        dev.resolve_device("cuda:1")


def test_workers_spread_over_the_gpus(monkeypatch):
    _gpus(monkeypatch, 3)
    assert [dev.resolve_device("auto", w) for w in range(5)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert dev.resolve_device("cuda", 4) == "cuda:1"
    assert dev.resolve_device("cuda:2", 4) == "cuda:2"  # an explicit GPU is every worker's
    with pytest.raises(EdgeshrinkError, match=r"has 3 CUDA GPU\(s\), cuda:0..cuda:2"):
        dev.resolve_device("cuda:3")


def test_mps_is_refused_where_torch_has_none(monkeypatch):
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    with pytest.raises(EdgeshrinkError, match="--device mps: this machine has no Apple-silicon"):
        dev.resolve_device("mps")


def test_mixed_precision_is_bf16_where_supported_else_fp16_with_a_scaler(monkeypatch):
    assert dev.autocast_dtype("cpu") is None and dev.grad_scaler("cpu", None) is None
    _gpus(monkeypatch, 1, bf16=True)
    assert dev.autocast_dtype("cuda:0") == torch.bfloat16
    assert dev.grad_scaler("cuda:0", torch.bfloat16) is None
    _gpus(monkeypatch, 1, bf16=False)
    assert dev.autocast_dtype("cuda:0") == torch.float16
    assert isinstance(dev.grad_scaler("cuda:0", torch.float16), torch.amp.GradScaler)


class _Exhausts(nn.Module):
    """Raises what torch raises when a CUDA allocation fails, on its second batch."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.fc(x.flatten(1))


def test_out_of_memory_fails_the_trial_in_one_line_naming_the_batch():
    x, y = torch.randn(40, 1, 2, 2), torch.randint(0, 3, (40,))
    model = _Exhausts()
    with pytest.raises(dev.TrainingOutOfMemory) as err:
        train_distilled(model, x, y, None, epochs=1, settings=TrainSettings(batch_size=16))
    assert str(err.value) == ("out of memory on cpu training with batch size 16; lower "
                              "--batch-size")
    assert isinstance(err.value, EdgeshrinkError)  # the objective records it and goes on
    assert next(model.parameters()).device.type == "cpu" and not model.training


def test_other_errors_are_not_called_out_of_memory():
    assert dev.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"))
    assert not dev.is_out_of_memory(RuntimeError("shape mismatch"))


def test_trial_records_where_it_trained():
    where = dev.describe_device("cpu")
    assert where["device"] == "cpu" and where["gpu"] is None
    assert where["torch"] == torch.__version__ and "cuda_version" in where


def test_learning_rate_follows_the_batch_linearly():
    assert TrainSettings.for_batch(64).lr == TrainSettings().lr == 0.01
    assert TrainSettings.for_batch(256).lr == pytest.approx(0.04)
    assert TrainSettings.for_batch(16, epochs=2).lr == pytest.approx(0.0025)
    recorded = TrainSettings(device="cuda:1", loader_workers=4).recorded()
    assert "device" not in recorded and "loader_workers" not in recorded
    assert recorded["batch_size"] == 64 and recorded["augment"] == "none"


# ---------------------------------------------------------------- augmentation


def test_augment_names_agree_and_digits_is_the_only_source_left_alone():
    assert AUGMENTS == AUGMENT_NAMES
    assert default_augment("digits") == "none"
    assert {default_augment(s) for s in ("mnist", "cifar10", "imagefolder")} == {"standard"}


def test_standard_augmentation_pads_and_crops_small_and_resizes_large_inputs():
    torch.manual_seed(0)
    small = augmentation("standard", 32)
    image = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(3, 32, 32)
    outs = [small(image) for _ in range(8)]
    assert all(o.shape == image.shape for o in outs)
    assert any(not torch.equal(o, image) for o in outs)  # shifted or flipped
    large = augmentation("standard", 64)
    assert large(torch.rand(3, 80, 80)).shape == (3, 64, 64)
    assert augmentation("none", 32) is None


class _CountingTeacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.fc(x.flatten(1))


def _student() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 4))


def _augmented_run(workers: int, teacher: nn.Module | None = None) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 3, 8, 8, generator=g), torch.randint(0, 4, (48,), generator=g)
    model = _student()
    settings = TrainSettings(batch_size=16, augment="standard", loader_workers=workers,
                             channels_last=False)
    teacher = teacher or _CountingTeacher()
    train_distilled(model, x, y, torch.zeros(48, 4), epochs=2, settings=settings, alpha=0.5,
                    temperature=2.0, seed=5, teacher=teacher)
    return model


def test_augmented_training_is_the_same_with_any_number_of_loader_workers():
    one, two = _augmented_run(0), _augmented_run(2)
    for a, b in zip(one.state_dict().values(), two.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_teacher_sees_the_augmented_batches_not_cached_logits():
    teacher = _CountingTeacher()
    _augmented_run(0, teacher)
    assert len(teacher.seen) == 2 * 3  # 2 epochs of 3 batches
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 3, 8, 8, generator=g)
    first = teacher.seen[0]
    # Each batch image is some training image, shifted or flipped: never the cached original.
    assert not any(torch.equal(first[0], img) for img in x)
    with pytest.raises(ValueError, match="needs the teacher model"):
        train_distilled(_student(), x, torch.zeros(48, dtype=torch.long), torch.zeros(48, 4),
                        epochs=1, alpha=0.5, settings=TrainSettings(augment="standard"))


# ---------------------------------------------------------------- the CLI on this machine


@pytest.mark.parametrize("device,message", [
    ("cuda", "--device cuda: torch sees no CUDA GPU here"),
    ("mps", "--device mps: this machine has no Apple-silicon GPU"),
])
def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(
        device, message, tmp_path, capsys, monkeypatch):
    _gpus(monkeypatch, 0)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("keep me")
    code = main(["search", "--run-dir", str(run), "--device", device, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_build_on_a_device_this_machine_lacks_is_refused_before_reading_the_recipe(
        tmp_path, capsys, monkeypatch):
    _gpus(monkeypatch, 0)
    config = tmp_path / "config.yaml"
    config.write_text("not: a recipe\n")  # never read: the device is refused first
    code = main(["build", str(config), "--out", str(tmp_path / "out"), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--device cuda: torch sees no CUDA GPU" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
