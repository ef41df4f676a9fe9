"""The per-trial training budget as plain data: no torch, so the CLI reads its defaults cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    """Per-trial training budget. Batch 64 beat 256 on this 2-core CPU (measured)."""

    epochs: int = 5
    finetune_epochs: int = 1  # after each pruning step, and for quantization-aware training
    prune_steps: int = 2  # iterative pruning: the target is reached in this many steps
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 4e-5
    calibration_samples: int = 128
    # Channels-last (NHWC) is the layout oneDNN's CPU convolutions run natively; in NCHW every
    # depthwise and pointwise conv pays reorders. Same arithmetic, faster epochs
    # (benchmarks/training_layout.py).
    channels_last: bool = True
