"""Data splits as tensors, and the embedded default: scikit-learn's 8x8 digits, split once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgeshrink.evaluators.data.bank import ImageBank

SPLIT_SEED = 0  # fixed, independent of --seed, so every study on digits sees the same split


@dataclass(frozen=True)
class Split:
    # float32, N x C x H x W, normalised; a training split read from the decoded-image cache
    # is an ImageBank, which indexes like that tensor and reads per batch
    x: torch.Tensor | ImageBank
    y: torch.Tensor  # int64, N


@dataclass(frozen=True)
class DataSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    resolution: int
    # Input preprocessing a deployed model needs: (pixel / pixel_scale - mean) / std, then resize.
    mean: float = 0.0
    std: float = 1.0
    pixel_scale: float = 1.0
    classes: tuple[str, ...] = ()  # names by label index, where the data has them

    def fingerprint(self) -> str:
        """Identifies the exact data, so a cached teacher is never reused on other data."""
        h = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            if isinstance(split.x, ImageBank):  # the same bytes, read a chunk at a time
                split.x.update_digest(h)
            else:
                h.update(split.x.numpy().tobytes())
            h.update(split.y.numpy().tobytes())
        return h.hexdigest()[:16]


def _resize(x: np.ndarray, resolution: int) -> torch.Tensor:
    t = torch.from_numpy(x).float().unsqueeze(1)
    if t.shape[-1] != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return t


def load_digits_splits(
    resolution: int = 16, fractions: tuple[float, float] = (0.6, 0.2)
) -> DataSplits:
    """Stratified train / validation / test split (60/20/20 by default) of the 1,797 digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train_frac, val_frac = fractions
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=train_frac, stratify=y, random_state=SPLIT_SEED
    )
    val_share = val_frac / (1.0 - train_frac)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, train_size=val_share, stratify=y_rest, random_state=SPLIT_SEED
    )
    mean, std = float(x_train.mean()), float(x_train.std())

    def split(xs: np.ndarray, ys: np.ndarray) -> Split:
        return Split((_resize(xs, resolution) - mean) / std, torch.from_numpy(ys))

    return DataSplits(
        name="digits",
        train=split(x_train, y_train),
        val=split(x_val, y_val),
        test=split(x_test, y_test),
        num_classes=10,
        in_channels=1,
        resolution=resolution,
        mean=mean,
        std=std,
        pixel_scale=16.0,
        classes=tuple(str(i) for i in range(10)),
    )

