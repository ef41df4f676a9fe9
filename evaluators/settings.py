"""The per-trial training budget as plain data: no torch, so the CLI reads its defaults cheaply."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    augment: str = "none"  # evaluators.augment.AUGMENTS; the search picks it per data source
    # Where training runs and how many processes augment images: they change how fast a trial
    # runs, not what it computes, so a resumed study or a build may use others (LOCAL_SETTINGS).
    device: str = "cpu"
    loader_workers: int = 0

    @classmethod
    def for_batch(cls, batch_size: int, **kwargs: object) -> TrainSettings:
        """The linear scaling rule (Goyal et al. 2017): the learning rate follows the batch."""
        lr = cls.lr * batch_size / cls.batch_size
        return cls(batch_size=batch_size, lr=lr, **kwargs)  # type: ignore[arg-type]

    def recorded(self) -> dict[str, object]:
        """What a study compares on resume and ``config.yaml`` keeps: without the local fields."""
        return {k: v for k, v in asdict(self).items() if k not in LOCAL_SETTINGS}


LOCAL_SETTINGS = ("device", "loader_workers")
