"""Training-time augmentation (torchvision transforms v2), drawn per image, reproducibly.

Each image's transform is seeded by (trial seed, epoch, image index), not by a worker's random
stream, so a run gives the same batches with any ``--loader-workers`` and ``build`` reproduces
the trial.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

AUGMENTS = ("none", "standard")  # --augment; search/options.py keeps the same names
NO_AUGMENT_SOURCES = ("digits",)  # 8x8 digits: a crop or a flip changes the class
SMALL_INPUT = 32  # at and below: pad-and-crop; above: RandomResizedCrop

Transform = Callable[[torch.Tensor], torch.Tensor]


def default_augment(source: str) -> str:
    return "none" if source in NO_AUGMENT_SOURCES else "standard"


def augmentation(kind: str, resolution: int) -> Transform | None:
    """The per-image training transform of ``--augment kind`` at ``resolution``, or None."""
    if kind == "none":
        return None
    if kind != "standard":
        raise ValueError(f"unknown augmentation {kind!r}")
    if resolution <= SMALL_INPUT:
        # CIFAR's recipe: 4 pixels of padding at 32 px, scaled with the input.
        crop = v2.RandomCrop(resolution, padding=max(1, resolution // 8))
    else:
        crop = v2.RandomResizedCrop(resolution, antialias=True)
    return v2.Compose([crop, v2.RandomHorizontalFlip()])


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class AugmentedImages(Dataset):
    """Keys are (seed, epoch, index); items are (augmented image, label, index)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        seed, epoch, index = key
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is untouched
            torch.manual_seed(_sample_seed(seed, epoch, index))
            image = self.transform(self.x[index])
        return image, self.y[index], index


def augmented_batches(dataset: AugmentedImages, order: Sequence[int], seed: int, epoch: int,
                      batch_size: int, workers: int, pin: bool) -> DataLoader:
    """One epoch's batches in ``order``; ``workers`` processes transform images in parallel."""
    keys = [(seed, epoch, int(i)) for i in order]
    return DataLoader(dataset, batch_size=batch_size, sampler=keys, num_workers=workers,
                      pin_memory=pin)
