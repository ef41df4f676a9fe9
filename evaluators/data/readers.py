"""Images on disk as uint8 arrays: the shared types and split helpers, and the ImageFolder reader.

A reader lists the files it depends on (the cache key) and decodes them into train,
validation and test arrays of shape N x C x H x W. Validation (and test, where the source has
none) is carved from the training images by a seeded stratified split, so it never changes.
Data that cannot train a classifier (one class, or a class absent from a split) is refused here,
before anything is decoded or trained. torchvision's own files are read by
:mod:`torchvision_files`.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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


def write_raw(raw: RawImages, out: Path) -> None:
    """The cache layout ``evaluators/data/bank.py`` reads: one uint8 ``.npy`` per split."""
    for part, (x, y) in raw.splits.items():
        np.save(out / f"x_{part}.npy", np.ascontiguousarray(x, dtype=np.uint8))
        np.save(out / f"y_{part}.npy", y.astype(np.int64))
    (out / "classes.json").write_text(json.dumps(list(raw.classes)))


def write_images(reader: Reader, spec: DataSpec, resolution: int, out: Path) -> None:
    """Decode into ``out``; a reader that can stream (``write``) never holds every image."""
    stream = getattr(reader, "write", None)
    if stream is not None:
        stream(spec, resolution, out)
    else:
        write_raw(reader.read(spec, resolution), out)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- splits


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
        for part, chunk in zip(parts, np.split(idx, _cuts(len(idx), fractions)), strict=True):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _cuts(n: int, fractions: tuple[float, ...]) -> np.ndarray:
    return np.round(np.cumsum(fractions) * n).astype(int)


def smallest_class(fractions: tuple[float, ...]) -> int:
    """The fewest images a class needs for :func:`stratified_split` to put one in every part."""
    return next(n for n in range(1, 1000)
                if np.diff(np.concatenate([[0], _cuts(n, fractions), [n]])).min() > 0)


def take(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x[idx], y[idx]


def check_trainable(raw: RawImages, where: str,
                    carved: dict[str, int] | None = None) -> RawImages:
    """Refuse data that cannot train and score a classifier, in one line naming ``where``.

    A classifier needs two classes, and every class in every split: the search trains on
    train and ranks on val, so a class missing there is never learnt or never scored.
    ``carved`` maps the splits carved by :func:`stratified_split` to the images a class needs.
    """
    classes = raw.classes
    if len(classes) < 2:
        raise EdgeshrinkError(f"{where}: {len(classes)} class ({', '.join(classes) or 'none'});"
                              " a classifier needs at least 2 classes")
    counts = {p: np.bincount(y, minlength=len(classes)) for p, (_, y) in raw.splits.items()}
    totals = sum(counts.values())
    for part in SPLITS:
        for c in np.flatnonzero(counts[part][: len(classes)] == 0):
            name = classes[c]
            fix = (f"give every class at least {carved[part]} images so the seeded split puts "
                   f"some in {part}" if carved and part in carved
                   else f"add images of class {name!r} to the {part} split")
            raise EdgeshrinkError(f"{where}: class {name!r} has no images in the {part} split "
                                  f"({totals[c]} in all); {fix}")
    return raw


def _carving(missing: list[str]) -> tuple[float, ...]:
    """Fractions of the training images kept for train, then each missing split."""
    return (0.6, 0.2) if len(missing) == 2 else (1.0 - VAL_SHARE,)


def assign_splits(arrays: dict[str, tuple[np.ndarray, np.ndarray]]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Use the train/val/test folders given; carve what is missing from the training images."""
    base = arrays["train"] if "train" in arrays else arrays["all"]
    missing = [p for p in ("val", "test") if p not in arrays]
    if not missing:
        return {p: arrays[p] for p in SPLITS}
    idx = stratified_split(base[1], _carving(missing))
    out = {p: arrays[p] for p in SPLITS if p in arrays and p != "train"}
    out["train"] = take(*base, idx[0])
    for part, chunk in zip(missing, idx[1:], strict=True):
        out[part] = take(*base, chunk)
    return {p: out[p] for p in SPLITS}


# ---------------------------------------------------------------- ImageFolder


def _unlistable(exc: OSError) -> None:
    raise EdgeshrinkError(f"cannot list {exc.filename}: {exc.strerror}")


def _images_in(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_unlistable, followlinks=True):
        dirnames.sort()
        found += [Path(dirpath) / f for f in sorted(filenames)
                  if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
    return found


def _scan(root: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """Classes and (file, label) per part: ``train``/``val``/``test`` if present, else ``all``.

    The split is checked here, from the labels alone, so unusable data is refused before any
    image is decoded or anything is written to the cache.
    """
    try:
        classes, layout = _list(root)
    except OSError as exc:
        raise EdgeshrinkError(f"cannot list {exc.filename or root}: {exc.strerror}") from None
    labels = {p: np.array([label for _, label in items], dtype=np.int64)
              for p, items in layout.items()}
    missing = [p for p in ("val", "test") if p not in layout]
    carved = dict.fromkeys(["train", *missing], smallest_class(_carving(missing)))
    check_trainable(RawImages(assign_splits({p: (y, y) for p, y in labels.items()}), classes),
                    f"image folder {root}", carved if missing else None)
    return classes, layout


def _list(root: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
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
        raise EdgeshrinkError(f"cannot read image {path}: {first_line(exc)}") from None


def _is_grey(x: np.ndarray) -> bool:
    return bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())


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
        if _is_grey(x):
            x = x[:, :1]
        x = np.ascontiguousarray(x)
        arrays, start = {}, 0
        for part, items in layout.items():
            y = np.array([label for _, label in items], dtype=np.int64)
            arrays[part] = (x[start : start + len(items)], y)
            start += len(items)
        return RawImages(assign_splits(arrays), classes)  # _scan checked the split


    def write(self, spec: DataSpec, resolution: int, out: Path, chunk: int = 128) -> None:
        """As ``read`` then ``write_raw``, but ``chunk`` images at a time: memory stays bounded
        by one chunk however many images the folder holds."""
        from edgeshrink.evaluators.data.bank import ImageBank, NpyWriter

        root = Path(str(spec.path))
        classes, layout = _scan(root)
        files = [f for items in layout.values() for f, _ in items]
        arrays, start = {}, 0
        for part, items in layout.items():
            index = np.arange(start, start + len(items))
            arrays[part] = (index, np.array([label for _, label in items], dtype=np.int64))
            start += len(items)
        grey = True
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for part, (index, y) in assign_splits(arrays).items():
                writer = NpyWriter(out / f"x_{part}.npy", (len(index), 3, resolution, resolution))
                with writer:
                    for i in range(0, len(index), chunk):
                        batch = [files[j] for j in index[i : i + chunk]]
                        pixels = np.stack(list(pool.map(lambda f: _decode(f, resolution), batch)))
                        x = pixels.transpose(0, 3, 1, 2)
                        grey = grey and _is_grey(x)
                        writer.write(x)
                np.save(out / f"y_{part}.npy", y)
        if grey:  # every image grey: keep one channel, as read() does
            for part in SPLITS:
                path = out / f"x_{part}.npy"
                bank = ImageBank(path, resolution)
                one = out / f"x_{part}.grey.npy"
                with NpyWriter(one, (len(bank), 1, resolution, resolution)) as writer:
                    for i in range(0, len(bank), chunk):
                        writer.write(bank.raw(slice(i, i + chunk))[:, :1])
                del bank
                os.replace(one, path)
        (out / "classes.json").write_text(json.dumps(list(classes)))


IMAGE_FOLDER = FolderReader()
