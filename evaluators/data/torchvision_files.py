"""Readers for torchvision's own files: MNIST and Fashion-MNIST (idx-ubyte), CIFAR-10 (pickles).

These sets come with their test split; validation is a seeded stratified share of the training
images, so it never changes. The shared types and split helpers are in :mod:`readers`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.data.readers import (
    VAL_SHARE,
    RawImages,
    check_trainable,
    first_line,
    smallest_class,
    stratified_split,
    take,
)

if TYPE_CHECKING:
    from edgeshrink.evaluators.data.sources import DataSpec

VAL_CARVED = ("train", "val")  # the parts carved from the official training images


def _with_val(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
              classes: tuple[str, ...], where: str) -> RawImages:
    """Official train/test sets: validation is a seeded stratified share of train."""
    keep, val = stratified_split(train[1], (1.0 - VAL_SHARE,))
    splits = {"train": take(*train, keep), "val": take(*train, val), "test": test}
    need = smallest_class((1.0 - VAL_SHARE,))
    return check_trainable(RawImages(splits, classes), where, dict.fromkeys(VAL_CARVED, need))


def _class_names(names: list[str], labels: list[np.ndarray]) -> tuple[str, ...]:
    """As many classes as the labels use: a data set with labels 0..2 has three."""
    count = int(max((int(y.max()) for y in labels if len(y)), default=-1) + 1)
    return tuple(names[i] if i < len(names) else str(i) for i in range(count))


def _download(fetch: Callable[[], Any], what: str, root: str) -> None:
    try:
        fetch()
    except Exception as exc:  # noqa: BLE001 - network and archive errors become one line
        raise EdgeshrinkError(f"cannot download {what} into {root}: {first_line(exc)}") from None


# ---------------------------------------------------------------- MNIST and Fashion-MNIST


@dataclass(frozen=True)
class IdxReader:
    """torchvision's MNIST layout: ``DATA_DIR/<Name>/raw/*-idx?-ubyte``."""

    dataset: str  # torchvision.datasets class name, also the folder name
    resizes: bool = False
    names: tuple[str, ...] = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def _cls(self) -> Any:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.dataset)

    def files(self, spec: DataSpec) -> list[Path]:
        root = str(spec.data_dir)
        raw = Path(root) / self.dataset / "raw"
        if spec.download:
            _download(lambda: self._cls()(root, train=True, download=True), self.dataset, root)
        missing = [n for n in self.names if not (raw / n).is_file()]
        if missing:
            raise EdgeshrinkError(
                f"{self.dataset} not found: {raw / missing[0]} is missing; pass --download to "
                f"fetch it, or --data-dir DIR where DIR/{self.dataset}/raw holds it"
            )
        return [raw / n for n in self.names]

    def read(self, spec: DataSpec, resolution: int) -> RawImages:
        where = str(Path(str(spec.data_dir)) / self.dataset / "raw")
        parts = []
        for train in (True, False):
            try:
                ds = self._cls()(str(spec.data_dir), train=train, download=False)
                x, y = ds.data.numpy(), ds.targets.numpy().astype(np.int64)
            except Exception as exc:  # noqa: BLE001 - a damaged file, whatever torchvision says
                raise EdgeshrinkError(f"cannot read {self.dataset} in {where}: "
                                      f"{first_line(exc)}") from None
            if x.ndim != 3 or len(x) != len(y) or len(y) == 0 or y.min() < 0:
                raise EdgeshrinkError(f"cannot read {self.dataset} in {where}: images "
                                      f"{tuple(x.shape)} do not match labels {tuple(y.shape)}")
            parts.append((x[:, None].astype(np.uint8), y))
        classes = _class_names(list(self._cls().classes), [p[1] for p in parts])
        return _with_val(parts[0], parts[1], classes, where)


# ---------------------------------------------------------------- CIFAR-10


class _ArraysOnly(pickle.Unpickler):
    """CIFAR batches are pickles; allow the few numpy globals they need and nothing else."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            entry = _ArraysOnly(fh, encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or hostile files alike
        raise EdgeshrinkError(f"cannot read CIFAR batch {path}: {first_line(exc)}") from None
    if not isinstance(entry, dict):
        raise EdgeshrinkError(f"cannot read CIFAR batch {path}: not a dictionary")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


@dataclass(frozen=True)
class CifarReader:
    """torchvision's CIFAR-10 layout: ``DATA_DIR/cifar-10-batches-py/data_batch_1..5, test_batch``.

    Read here rather than by torchvision, whose md5 check rejects anything but the original files.
    """

    resizes: bool = False
    folder: str = "cifar-10-batches-py"
    train: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
    test: tuple[str, ...] = ("test_batch",)

    def files(self, spec: DataSpec) -> list[Path]:
        root = str(spec.data_dir)
        base = Path(root) / self.folder
        if spec.download:
            import torchvision.datasets

            _download(lambda: torchvision.datasets.CIFAR10(root, download=True), "CIFAR-10", root)
        missing = [n for n in (*self.train, *self.test) if not (base / n).is_file()]
        if missing:
            raise EdgeshrinkError(
                f"CIFAR-10 not found: {base / missing[0]} is missing; pass --download to fetch "
                f"it, or --data-dir DIR where DIR/{self.folder} holds it"
            )
        return [base / n for n in (*self.train, *self.test)]

    def _batches(self, base: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            entry = _unpickle(base / name)
            try:
                x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(entry["labels"], dtype=np.int64)
            except (KeyError, ValueError) as exc:
                raise EdgeshrinkError(f"cannot read CIFAR batch {base / name}: expected 'data' "
                                      f"rows of 3072 pixels and 'labels' ({exc})") from None
            if len(x) != len(y) or (len(y) and y.min() < 0):
                raise EdgeshrinkError(f"cannot read CIFAR batch {base / name}: "
                                      f"{len(x)} images but {len(y)} labels")
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    def read(self, spec: DataSpec, resolution: int) -> RawImages:
        base = Path(str(spec.data_dir)) / self.folder
        train, test = self._batches(base, self.train), self._batches(base, self.test)
        meta = base / "batches.meta"
        names = list(_unpickle(meta).get("label_names", [])) if meta.is_file() else []
        return _with_val(train, test, _class_names(names, [train[1], test[1]]), str(base))


MNIST = IdxReader("MNIST")
FASHION_MNIST = IdxReader("FashionMNIST")
CIFAR10 = CifarReader()
