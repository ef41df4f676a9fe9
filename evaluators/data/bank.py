"""A training split that stays on disk: uint8 images read per batch, normalised per batch.

The decoded-image cache stores each split as a ``.npy`` file of uint8 N x C x H x W. Training
reads the images of one batch with ``os.pread`` and turns them into float at the candidate's
resolution only then, so a search's resident memory does not grow with the number of training
images (a float32 copy of 100,000 photos at 224 px is 60 GB). ``pread`` rather than ``mmap``:
pages of a mapping count as the process's resident memory once touched, reads into the batch's
own buffer do not. The operating system's page cache still keeps a small split in memory.

An :class:`ImageBank` indexes like the float tensor it replaces (``x[idx]``, ``x[:n]``,
``x[i]``, ``len(x)``, ``x.shape``), which is all training, distillation, pruning and
calibration ask of a split.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

CHUNK_BYTES = 8 * 2**20  # float32 bytes per chunk when a whole split is swept


def chunk_images(shape: tuple[int, ...] | torch.Size) -> int:
    """Images per chunk of a sweep (statistics, fingerprint): 8 MiB of float32 at a time,
    the same for a split on disk and one in memory so both sum in the same order."""
    return max(1, CHUNK_BYTES // (4 * int(np.prod(shape[1:]))))


def to_float(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 N x C x H x W to float in [0, 1] at ``resolution`` (antialiased when shrinking)."""
    t = torch.from_numpy(np.require(images, requirements=["C", "W"])).float().div_(255.0)
    if tuple(t.shape[-2:]) != (resolution, resolution):
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear",
                          align_corners=False, antialias=t.shape[-1] > resolution)
    return t


def sweep_stats(chunks: Callable[[], Iterable[torch.Tensor]]) -> tuple[float, float]:
    """Mean and (unbiased) std of every value, in float64, over ``chunks()`` twice: a split read
    from disk and one held in memory, chunked alike, get bit-identical figures."""
    total, count = 0.0, 0
    for c in chunks():
        total += float(c.double().sum())
        count += c.numel()
    mean = total / count
    squares = sum(float(c.double().sub_(mean).square_().sum()) for c in chunks())
    std = (squares / max(count - 1, 1)) ** 0.5
    return mean, (std if std > 0 else 1.0)


def npy_layout(path: Path) -> tuple[tuple[int, ...], int]:
    """Shape and data offset of a C-ordered uint8 ``.npy`` file."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        if fortran or dtype != np.uint8:
            raise ValueError(f"{path}: expected C-ordered uint8, got {dtype}")
        return tuple(shape), fh.tell()


class NpyWriter:
    """Writes a uint8 ``.npy`` file of known shape in sequential chunks, never all in memory."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.fh = open(path, "wb")  # noqa: SIM115 - closed when the with block ends
        np.lib.format.write_array_header_1_0(
            self.fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
        self.expected, self.written = int(np.prod(shape)), 0

    def write(self, chunk: np.ndarray) -> None:
        data = np.ascontiguousarray(chunk, dtype=np.uint8)
        self.fh.write(data.tobytes())
        self.written += data.size

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Closes the file; checks it is complete only when the block succeeded, so the
        block's own error is the one that surfaces."""
        self.fh.close()
        if kind is None and self.written != self.expected:
            raise ValueError(f"{self.fh.name}: wrote {self.written} of {self.expected} bytes")


class ImageBank:
    """A split's images on disk, normalised as ``(pixel / 255 - mean) / std`` per read."""

    def __init__(self, path: Path | str, resolution: int, mean: float = 0.0, std: float = 1.0):
        self.path, self.resolution = Path(path), resolution
        self.mean, self.std = mean, std
        self.stored_shape, self.offset = npy_layout(self.path)
        self.image_bytes = int(np.prod(self.stored_shape[1:]))
        self._fd = os.open(self.path, os.O_RDONLY)

    # ---------------------------------------------------------------- tensor-like surface

    @property
    def shape(self) -> torch.Size:
        n, c = self.stored_shape[:2]
        return torch.Size((n, c, self.resolution, self.resolution))

    def __len__(self) -> int:
        return self.stored_shape[0]

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)):
            return self[[int(idx)]][0]
        return self._normalise(to_float(self.raw(idx), self.resolution))

    def numpy(self) -> np.ndarray:
        """The whole split as float: for small splits only (tests, a validation set)."""
        return self[:].numpy()

    # ---------------------------------------------------------------- reading

    def raw(self, idx: Any) -> np.ndarray:
        """uint8 images ``idx`` (a slice, or any sequence or tensor of indices)."""
        n = len(self)
        if isinstance(idx, slice):
            start, stop, step = idx.indices(n)
            if step == 1:
                return self._read(start, max(stop - start, 0))
            order = np.arange(start, stop, step)
        else:
            order = np.asarray(idx.numpy() if isinstance(idx, torch.Tensor) else idx,
                               dtype=np.int64).reshape(-1)
            order = np.where(order < 0, order + n, order)
        out = np.empty((len(order), *self.stored_shape[1:]), np.uint8)
        for k, i in enumerate(order):
            out[k] = self._read(int(i), 1)[0]
        return out

    def _read(self, start: int, count: int) -> np.ndarray:
        size = count * self.image_bytes
        data = os.pread(self._fd, size, self.offset + start * self.image_bytes)
        if len(data) != size:
            raise OSError(f"{self.path}: short read ({len(data)} of {size} bytes)")
        return np.frombuffer(data, np.uint8).reshape(count, *self.stored_shape[1:])

    def float_chunks(self) -> Iterator[torch.Tensor]:
        """Every image as float in [0, 1] at the resolution, ``chunk_images`` at a time."""
        chunk = chunk_images(self.shape)
        for i in range(0, len(self), chunk):
            yield to_float(self._read(i, min(chunk, len(self) - i)), self.resolution)

    def _normalise(self, t: torch.Tensor) -> torch.Tensor:
        return ((t - self.mean) / self.std).float()

    def update_digest(self, h: hashlib._Hash) -> None:
        """Feeds ``h`` the bytes ``self.numpy().tobytes()`` would give, chunk by chunk."""
        for chunk in self.float_chunks():
            h.update(self._normalise(chunk).numpy().tobytes())

    # ---------------------------------------------------------------- processes

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers under spawn reopen the file
        return {"path": self.path, "resolution": self.resolution, "mean": self.mean,
                "std": self.std}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None
