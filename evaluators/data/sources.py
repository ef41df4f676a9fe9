"""Where the images come from: a registry of data sources, each named by ``--dataset``.

``digits`` is embedded. The others are read from disk (``mnist``, ``fashion-mnist`` and
``cifar10`` in torchvision's layout under ``--data-dir``; ``imagefolder:PATH``), decoded once
into uint8 arrays cached in the run directory, and normalised at the candidate's resolution:
the training split per batch as it is read (``bank.ImageBank``), the others once, whole.
Channel and class counts come from the data, never from constants.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeshrink.core.atomic import atomic_directory, compute_once
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.data import readers, torchvision_files
from edgeshrink.evaluators.data.bank import ImageBank, chunk_images, sweep_stats, to_float
from edgeshrink.evaluators.data.readers import RawImages
from edgeshrink.evaluators.data.splits import DataSplits, Split, load_digits_splits

CACHE_FORMAT = 2  # bump when the cached arrays change meaning (2: .npy per split)
DEFAULT_DATA_DIR = "data"  # torchvision's customary root, relative to the working directory


@dataclass(frozen=True)
class DataSpec:
    """One data source as the user named it; paths are absolute so a recipe works from anywhere."""

    name: str  # registry key
    path: str | None = None  # the folder of imagefolder:PATH
    data_dir: str | None = None  # root of torchvision-layout data sets
    download: bool = False  # fetch torchvision data sets that are missing

    @property
    def label(self) -> str:
        """The ``--dataset`` value that names this source again: stored with the study."""
        return f"{self.name}:{self.path}" if self.path else self.name

    @classmethod
    def parse(cls, text: str, data_dir: Path | str | None = None,
              download: bool = False) -> DataSpec:
        name, sep, arg = text.partition(":")
        source = SOURCES.get(name)
        if source is None:
            raise EdgeshrinkError(
                f"unknown dataset {text!r}; available: "
                + ", ".join(f"{n}:PATH" if s.takes_path else n for n, s in SOURCES.items())
            )
        if source.takes_path != bool(arg):
            usage = (f"{name}:PATH" if source.takes_path
                     else f"{name} --data-dir DIR" if source.uses_data_dir else name)
            raise EdgeshrinkError(f"--dataset {text!r}: write it as {usage}")
        path = str(Path(arg).expanduser().resolve()) if sep else None
        root = None
        if source.uses_data_dir:
            root = str(Path(data_dir or DEFAULT_DATA_DIR).expanduser().resolve())
        return cls(name, path, root, download and source.uses_data_dir)


def spec_from_setup(setup: dict[str, Any]) -> DataSpec:
    """The data source a study (or a config.yaml) recorded."""
    return DataSpec.parse(str(setup["dataset"]), setup.get("data_dir"))


@dataclass(frozen=True)
class Source:
    """How one kind of data is loaded; ``load(spec, resolution, cache_dir)``."""

    load: Callable[[DataSpec, int, Path | None], DataSplits]
    takes_path: bool = False
    uses_data_dir: bool = False


def load_data(spec: DataSpec, resolution: int, cache_dir: Path | None = None) -> DataSplits:
    """Splits at ``resolution``; decoded images are cached in ``cache_dir`` when given."""
    return SOURCES[spec.name].load(spec, resolution, cache_dir)


# ---------------------------------------------------------------- decoded-image cache


def _cache_key(spec: DataSpec, resolution: int | None, files: list[Path]) -> str:
    """Changes when the source's files do (size or modification time), not only its name."""
    stats = [(str(f), st.st_size, st.st_mtime_ns) for f in files for st in (f.stat(),)]
    blob = json.dumps([CACHE_FORMAT, spec.label, resolution, stats])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_images(spec: DataSpec, reader: readers.Reader, resolution: int,
                  cache_dir: Path) -> Path:
    """Decode once per run directory into a folder of ``.npy`` files; a file lock makes
    concurrent first starts decode once, and the folder appears whole or not at all."""
    files = reader.files(spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(spec, resolution if reader.resizes else None, files)
    path = cache_dir / f"{spec.name}-{key}"

    def decode() -> Path:
        with atomic_directory(path) as work:
            readers.write_images(reader, spec, resolution, work)
        return path

    return compute_once(cache_dir / f".{spec.name}-{key}.lock",
                        lambda: path if (path / "classes.json").is_file() else None, decode)


# ---------------------------------------------------------------- arrays to tensors


def _in_chunks(x: torch.Tensor) -> Callable[[], list[torch.Tensor]]:
    return lambda: list(x.split(chunk_images(x.shape)))


def splits_from_raw(name: str, raw: RawImages, resolution: int) -> DataSplits:
    """Every split in memory, normalised with the training split's mean and std (as a
    deployed model must be too); what ``splits_from_cache`` gives, without a cache."""
    floats = {p: to_float(x, resolution) for p, (x, _) in raw.splits.items()}
    mean, std = sweep_stats(_in_chunks(floats["train"]))

    def split(part: str) -> Split:
        x = ((floats[part] - mean) / std).float()
        return Split(x, torch.from_numpy(raw.splits[part][1].astype(np.int64)))

    return _splits(name, split, raw.classes, int(raw.splits["train"][0].shape[1]), resolution,
                   mean, std)


def splits_from_cache(name: str, folder: Path, resolution: int) -> DataSplits:
    """The training split stays on disk, read and normalised per batch (``ImageBank``); the
    validation and test splits, read whole by every trial's scoring, are held as tensors."""
    train = ImageBank(folder / "x_train.npy", resolution)
    mean, std = sweep_stats(train.float_chunks)
    classes = tuple(json.loads((folder / "classes.json").read_text()))

    def split(part: str) -> Split:
        y = torch.from_numpy(np.load(folder / f"y_{part}.npy").astype(np.int64))
        if part == "train":
            return Split(ImageBank(folder / "x_train.npy", resolution, mean, std), y)
        held = ImageBank(folder / f"x_{part}.npy", resolution, mean, std)
        return Split(torch.cat([held[i : i + 4096] for i in range(0, len(held), 4096)]), y)

    return _splits(name, split, classes, train.stored_shape[1], resolution, mean, std)


def _splits(name: str, split: Callable[[str], Split], classes: tuple[str, ...], channels: int,
            resolution: int, mean: float, std: float) -> DataSplits:
    return DataSplits(
        name=name,
        train=split("train"),
        val=split("val"),
        test=split("test"),
        num_classes=len(classes),
        in_channels=channels,
        resolution=resolution,
        mean=mean,
        std=std,
        pixel_scale=255.0,
        classes=classes,
    )


def _from_files(reader: readers.Reader) -> Callable[[DataSpec, int, Path | None], DataSplits]:
    def load(spec: DataSpec, resolution: int, cache_dir: Path | None) -> DataSplits:
        name = Path(spec.path).name if spec.path else spec.name
        if cache_dir is None:
            return splits_from_raw(name, reader.read(spec, resolution), resolution)
        return splits_from_cache(name, cached_images(spec, reader, resolution, cache_dir),
                                 resolution)

    return load


SOURCES: dict[str, Source] = {
    "digits": Source(lambda spec, resolution, cache: load_digits_splits(resolution)),
    "mnist": Source(_from_files(torchvision_files.MNIST), uses_data_dir=True),
    "fashion-mnist": Source(_from_files(torchvision_files.FASHION_MNIST), uses_data_dir=True),
    "cifar10": Source(_from_files(torchvision_files.CIFAR10), uses_data_dir=True),
    "imagefolder": Source(_from_files(readers.IMAGE_FOLDER), takes_path=True),
}
