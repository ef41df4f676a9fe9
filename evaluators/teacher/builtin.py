"""The teacher: a larger plain CNN trained once per run directory and cached with its logits.

Plain 3x3 convolutions train fast on a CPU (depthwise ones do not), so the teacher costs
about as much as one or two trials and every trial, and a resumed search, reuses it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from edgeshrink.core.atomic import atomic_path, atomic_write_text
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.training import TrainSettings, predict_logits, train_distilled

TEACHER_EPOCHS = 15
TEACHER_LR = 0.003  # at batch 64


class TeacherCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            Conv2dNormActivation(in_channels, width, 3),
            Conv2dNormActivation(width, width * 2, 3),
            nn.MaxPool2d(2),
            Conv2dNormActivation(width * 2, width * 4, 3),
            nn.MaxPool2d(2),
            Conv2dNormActivation(width * 4, width * 4, 3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class Teacher:
    model: nn.Module
    train_logits: torch.Tensor  # computed once, reused by every trial's distillation
    val_accuracy: float
    trained_now: bool
    seconds: float


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_logits(model, x).argmax(1) == y).float().mean())


def load_or_train_teacher(data: DataSplits, cache_dir: Path, seed: int = 0,
                          epochs: int = TEACHER_EPOCHS,
                          settings: TrainSettings | None = None) -> Teacher:
    """Reuse the cached teacher when it was trained on exactly this data; else train and cache.

    ``settings`` lends the search's device, batch size and augmentation; the teacher keeps its
    own learning rate (0.003 at batch 64, scaled with the batch)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    weights, meta_path = cache_dir / "teacher.pt", cache_dir / "teacher.json"
    base = settings or TrainSettings()
    train = replace(base, lr=TEACHER_LR * base.batch_size / TrainSettings.batch_size)
    key = {"data": data.fingerprint(), "epochs": epochs, "seed": seed, "arch": "TeacherCNN-32"}
    if train.augment != "none" or train.batch_size != TrainSettings.batch_size:
        key |= {"augment": train.augment, "batch_size": train.batch_size}
    model = TeacherCNN(data.in_channels, data.num_classes)
    if weights.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            state = torch.load(weights, weights_only=True)
            model.load_state_dict(state["model"])
            model.eval()
            return Teacher(model, state["train_logits"], meta["val_accuracy"], False, 0.0)

    start = time.perf_counter()
    torch.manual_seed(seed)
    model = TeacherCNN(data.in_channels, data.num_classes)
    train_distilled(model, data.train.x, data.train.y, None, epochs=epochs, settings=train,
                    seed=seed)
    logits = predict_logits(model, data.train.x)
    acc = _accuracy(model, data.val.x, data.val.y)
    seconds = time.perf_counter() - start
    # Weights first, the metadata that validates them last: a crash never leaves a cache that
    # looks complete.
    with atomic_path(weights) as tmp:
        torch.save({"model": model.state_dict(), "train_logits": logits}, tmp)
    atomic_write_text(meta_path, json.dumps({"key": key, "val_accuracy": acc,
                                             "train_seconds": seconds}))
    return Teacher(model, logits, acc, True, seconds)
