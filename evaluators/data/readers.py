"""Readers for images on disk, in the layouts torchvision uses; each returns uint8 arrays.

A reader lists the files it depends on (the cache key) and decodes them into train,
validation and test arrays of shape N x C x H x W. Validation (and test, where the source has
none) is carved from the training images by a seeded stratified split, so it never changes.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgeshrink.core.errors import EdgeshrinkError

if TYPE_CHECKING:
    from edgeshrink.evaluators.data.sources import DataSpec

SPLITS = ("train", "val", "test")
SPLIT_SEED = 0  # fixed, independent of --seed, so every study on the same data sees one split
VAL_SHARE = 0.2  # of the training images, where a source has no validation split
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class RawImages:
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (uint8 N x C x H x W, labels)
    classes: tuple[str, ...]


class Reader(Protocol):
    resizes: bool  # decodes straight to the requested resolution (so the cache depends on it)

    def files(self, spec: DataSpec) -> list[Path]: ...

    def read(self, spec: DataSpec, resolution: int) -> RawImages: ...


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...],
                     seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Indices of len(fractions) + 1 parts, each class divided in the same proportions.

    The last part takes what the fractions leave. Works for any class size (sklearn's refuses
    classes of one image), and each part keeps the original order.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(np.cumsum(fractions) * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _take(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x[idx], y[idx]


def _checked(raw: RawImages, where: str) -> RawImages:
    for part in SPLITS:
        if len(raw.splits[part][1]) == 0:
            raise EdgeshrinkError(
                f"{where}: too few images to hold out a {part} split; add images (a few per class)"
            )
    return raw


def _with_val(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
              classes: tuple[str, ...], where: str) -> RawImages:
    """Official train/test sets: validation is a seeded stratified share of train."""
    keep, val = stratified_split(train[1], (1.0 - VAL_SHARE,))
    splits = {"train": _take(*train, keep), "val": _take(*train, val), "test": test}
    return _checked(RawImages(splits, classes), where)


def _class_names(names: list[str], labels: list[np.ndarray]) -> tuple[str, ...]:
    """As many classes as the labels use: a data set with labels 0..2 has three."""
    count = int(max(int(y.max()) for y in labels if len(y)) + 1)
    return tuple(names[i] if i < len(names) else str(i) for i in range(count))


def _download(fetch: Callable[[], Any], what: str, root: str) -> None:
    try:
        fetch()
    except Exception as exc:  # noqa: BLE001 - network and archive errors become one line
        raise EdgeshrinkError(f"cannot download {what} into {root}: {_first_line(exc)}") from None


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
                                      f"{_first_line(exc)}") from None
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
        raise EdgeshrinkError(f"cannot read CIFAR batch {path}: {_first_line(exc)}") from None
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


# ---------------------------------------------------------------- ImageFolder


def _images_in(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found += [Path(dirpath) / f for f in sorted(filenames)
                  if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
    return found


def _scan(root: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """Classes and (file, label) per part: ``train``/``val``/``test`` if present, else ``all``."""
    if not root.exists():
        raise EdgeshrinkError(f"image folder not found: {root}")
    if not root.is_dir():
        raise EdgeshrinkError(f"{root} is not a folder (imagefolder:PATH needs a folder of "
                              "class folders)")
    split_mode = (root / "train").is_dir()
    parts = {p: root / p for p in SPLITS if (root / p).is_dir()} if split_mode else {"all": root}
    first = parts.get("train", root)
    classes = tuple(sorted(d.name for d in first.iterdir()
                           if d.is_dir() and not d.name.startswith(".")))
    layout: dict[str, list[tuple[Path, int]]] = {}
    for part, folder in parts.items():
        items = []
        for sub in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
            if sub.name not in classes:
                raise EdgeshrinkError(f"{sub}: class {sub.name!r} is not in {first}")
            items += [(f, classes.index(sub.name)) for f in _images_in(sub)]
        layout[part] = items
    if not any(layout.values()):
        raise EdgeshrinkError(
            f"no images found in {root}: expected {root}/<class>/<image> (or train/<class>/...) "
            f"with suffixes {', '.join(IMAGE_SUFFIXES)}"
        )
    used = {label for _, label in layout["train" if split_mode else "all"]}
    empty = [c for i, c in enumerate(classes) if i not in used]
    if empty:
        raise EdgeshrinkError(f"class folder {first / empty[0]} has no images")
    return classes, layout


def _decode(path: Path, resolution: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale
            rgb = img.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise EdgeshrinkError(f"cannot read image {path}: {_first_line(exc)}") from None


@dataclass(frozen=True)
class FolderReader:
    """torchvision's ImageFolder layout, decoded and resized once with Pillow.

    Images are read as RGB; if every pixel of every image is grey, one channel is kept.
    """

    resizes: bool = True

    def files(self, spec: DataSpec) -> list[Path]:
        _, layout = _scan(Path(str(spec.path)))
        return [f for items in layout.values() for f, _ in items]

    def read(self, spec: DataSpec, resolution: int) -> RawImages:
        root = Path(str(spec.path))
        classes, layout = _scan(root)
        files = [f for items in layout.values() for f, _ in items]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Pillow drops the GIL
            pixels = np.stack(list(pool.map(lambda f: _decode(f, resolution), files)))
        x = pixels.transpose(0, 3, 1, 2)
        if (x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all():
            x = x[:, :1]
        x = np.ascontiguousarray(x)
        arrays, start = {}, 0
        for part, items in layout.items():
            y = np.array([label for _, label in items], dtype=np.int64)
            arrays[part] = (x[start : start + len(items)], y)
            start += len(items)
        return _checked(RawImages(_assign_splits(arrays), classes), str(root))


def _assign_splits(arrays: dict[str, tuple[np.ndarray, np.ndarray]]
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Use the train/val/test folders given; carve what is missing from the training images."""
    base = arrays["train"] if "train" in arrays else arrays["all"]
    missing = [p for p in ("val", "test") if p not in arrays]
    if not missing:
        return {p: arrays[p] for p in SPLITS}
    fractions = (0.6, 0.2) if len(missing) == 2 else (1.0 - VAL_SHARE,)
    idx = stratified_split(base[1], fractions)
    out = {p: arrays[p] for p in SPLITS if p in arrays and p != "train"}
    out["train"] = _take(*base, idx[0])
    for part, chunk in zip(missing, idx[1:], strict=True):
        out[part] = _take(*base, chunk)
    return {p: out[p] for p in SPLITS}


MNIST = IdxReader("MNIST")
FASHION_MNIST = IdxReader("FashionMNIST")
CIFAR10 = CifarReader()
IMAGE_FOLDER = FolderReader()
