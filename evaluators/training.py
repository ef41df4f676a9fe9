"""Training loops: plain supervised (teacher) and distillation from cached teacher logits."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.augment import AugmentedImages, augmentation, augmented_batches
from edgeshrink.evaluators.device import (
    TrainingOutOfMemory,
    autocast,
    autocast_dtype,
    grad_scaler,
    is_out_of_memory,
    release_memory,
)
from edgeshrink.evaluators.hints import teacher_on_batch
from edgeshrink.evaluators.settings import TrainSettings  # re-exported: callers import it here
from edgeshrink.spaces.distillation import HintRegressor, distillation_loss, hint_loss


class TrainingDiverged(EdgeshrinkError):
    """The loss became NaN or infinite; the trial is recorded as failed with this message."""


@dataclass(frozen=True)
class Hint:
    """Feature distillation for one training run: the teacher's maps, per training image."""

    targets: torch.Tensor  # [N, C, g, g], aligned with the training images
    weight: float
    layer: str = "blocks"  # the student's module whose output takes the hint


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def train_distilled(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    epochs: int,
    settings: TrainSettings,
    temperature: float = 1.0,
    alpha: float = 0.0,
    seed: int = 0,
    lr: float | None = None,
    after_epoch: Callable[[int], None] | None = None,
    hint: Hint | None = None,
    teacher: nn.Module | None = None,
) -> float:
    """Train in place with AdamW and a cosine schedule; returns the last epoch's mean loss.

    With ``teacher_logits`` None (or alpha 0) this is plain cross-entropy training. A ``hint``
    adds the FitNets loss on the output of ``model.<hint.layer>``; its regressor is trained
    alongside and discarded, so the model's architecture is unchanged.
    With ``settings.augment`` on, every batch is augmented and the ``teacher`` model computes
    its logits (and hint maps) on that same batch: cached per-image ones would describe
    another crop. Training runs on ``settings.device`` with mixed precision on CUDA; the model
    is back on the CPU when this returns, where export and scoring run. A GPU that runs out of
    memory raises ``TrainingOutOfMemory`` naming the batch size.
    ``after_epoch(epoch)`` (1-based) may look at the model or raise to stop early; it draws no
    random numbers and the model is put back in training mode, so training is unchanged by it.
    """
    if epochs <= 0:
        return float("nan")
    device = settings.device
    try:
        return _train(model, x, y, teacher_logits, epochs=epochs, settings=settings,
                      temperature=temperature, alpha=alpha, seed=seed, lr=lr,
                      after_epoch=after_epoch, hint=hint, teacher=teacher)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        model.to("cpu")
        release_memory(device)
        raise TrainingOutOfMemory(
            f"out of memory on {device} training with batch size {settings.batch_size}; "
            "lower --batch-size") from None
    finally:
        model.to("cpu", memory_format=torch.contiguous_format)
        model.eval()


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           teacher_logits: torch.Tensor | None, *, epochs: int, settings: TrainSettings,
           temperature: float, alpha: float, seed: int, lr: float | None,
           after_epoch: Callable[[int], None] | None, hint: Hint | None,
           teacher: nn.Module | None) -> float:
    device = settings.device
    on_gpu = device != "cpu"
    pin = device.startswith("cuda")  # page-locked host memory: CUDA's asynchronous copies
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format
    model.to(device, memory_format=layout)  # undone by the caller
    augment = augmentation(settings.augment, x.shape[-1])
    distil = teacher_logits is not None and alpha != 0
    live = augment is not None and (distil or hint is not None)
    if live and teacher is None:
        raise ValueError("augmented distillation needs the teacher model, not cached logits")
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    captured: list[torch.Tensor] = []
    handle = regressor = None
    if hint is not None and hint.weight > 0:
        layer = getattr(model, hint.layer)
        handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(x[:1].to(device))
            model.train(was_training)
        regressor = HintRegressor(captured.pop().shape[1], hint.targets.shape[1],
                                  hint.targets.shape[-1]).to(device)
        params += list(regressor.parameters())
    # fused: one kernel for all ~100 small parameter tensors instead of a Python loop (4% faster
    # epochs on default-space students; same update rule).
    opt = torch.optim.AdamW(params, lr=lr or settings.lr, weight_decay=settings.weight_decay,
                            fused=device == "cpu" or device.startswith("cuda"))
    steps = epochs * math.ceil(len(x) / settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    amp = autocast_dtype(device)
    scaler = grad_scaler(device, amp)
    ce = nn.CrossEntropyLoss()
    dataset = AugmentedImages(x, y, augment) if augment is not None else None
    model.train()
    mean_loss = float("nan")
    for epoch in range(1, epochs + 1):
        total, count = 0.0, 0
        if dataset is None:
            batches = ((x[idx], y[idx], idx)
                       for idx in _batches(len(x), settings.batch_size, gen))
        else:
            order = torch.randperm(len(x), generator=gen).tolist()
            batches = augmented_batches(dataset, order, seed, epoch, settings.batch_size,
                                        settings.loader_workers, pin=pin)
        for xb, yb, idx in batches:
            if on_gpu:
                if pin and not xb.is_pinned():
                    xb = xb.pin_memory()
                xb = xb.to(device, non_blocking=pin)
                yb = yb.to(device, non_blocking=pin)
            xb = xb.contiguous(memory_format=layout)
            if live:
                t_logits, t_maps = teacher_on_batch(teacher, xb, hints=regressor is not None)
                t_logits = t_logits if distil else None  # hints alone: plain cross-entropy
            else:
                t_logits = teacher_logits[idx].to(device) if distil else None
                t_maps = hint.targets[idx].to(device) if regressor is not None else None
            with autocast(device, amp):
                logits = model(xb)
                if t_logits is None:
                    loss = ce(logits, yb)
                else:
                    loss = distillation_loss(logits, t_logits, yb, temperature, alpha)
                if regressor is not None:
                    feats = captured.pop()
                    loss = loss + hint.weight * (hint_loss(feats, t_maps, regressor)
                                                 if t_maps is not None else 0.0)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training diverged: loss became {loss.item()}")
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            sched.step()
            total += loss.item() * len(yb)
            count += len(yb)
        mean_loss = total / count
        if after_epoch is not None:
            after_epoch(epoch)
            captured.clear()  # the callback's own forward passes are not hint inputs
            model.train()
    if handle is not None:
        handle.remove()
    return mean_loss


def model_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_logits(model, x).argmax(1) == y).float().mean())


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.cat([model(x[i : i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(x), batch_size)])
