"""Where the images come from: a registry of data sources, each named by ``--dataset``.

``digits`` is embedded. The others are read from disk (``mnist``, ``fashion-mnist`` and
``cifar10`` in torchvision's layout under ``--data-dir``; ``imagefolder:PATH``), decoded once
into uint8 arrays cached in the run directory, and turned into normalised tensors at the
candidate's resolution. Channel and class counts come from the data, never from constants.
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
import torch.nn.functional as F

from edgeshrink.core.atomic import atomic_path, compute_once
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.data import readers, torchvision_files
from edgeshrink.evaluators.data.readers import RawImages
from edgeshrink.evaluators.data.splits import DataSplits, Split, load_digits_splits

CACHE_FORMAT = 1  # bump when the cached arrays change meaning
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


def _save_npz(path: Path, raw: RawImages) -> None:
    """Readers never see half a file (``core.atomic``)."""
    arrays = {f"{k}_{part}": a for part, (x, y) in raw.splits.items()
              for k, a in (("x", x), ("y", y))}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, classes=np.array(raw.classes, dtype=str), **arrays)


def _load_npz(path: Path) -> RawImages:
    with np.load(path, allow_pickle=False) as z:
        splits = {p: (z[f"x_{p}"], z[f"y_{p}"]) for p in readers.SPLITS}
        return RawImages(splits, tuple(str(c) for c in z["classes"]))


def cached_raw(spec: DataSpec, reader: readers.Reader, resolution: int,
               cache_dir: Path | None) -> RawImages:
    """Decode once per run directory; a file lock makes concurrent first starts decode once."""
    files = reader.files(spec)
    if cache_dir is None:
        return reader.read(spec, resolution)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(spec, resolution if reader.resizes else None, files)
    path = cache_dir / f"{spec.name}-{key}.npz"

    def decode() -> RawImages:
        raw = reader.read(spec, resolution)
        _save_npz(path, raw)
        return raw

    return compute_once(cache_dir / f".{spec.name}-{key}.lock",
                        lambda: _load_npz(path) if path.is_file() else None, decode)


# ---------------------------------------------------------------- arrays to tensors


def _to_float(images: np.ndarray, resolution: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 N x C x H x W to float in [0, 1] at ``resolution``, chunked to bound memory."""
    n, c = images.shape[:2]
    out = [torch.zeros(0, c, resolution, resolution)]
    for i in range(0, n, chunk):
        t = torch.from_numpy(np.ascontiguousarray(images[i : i + chunk])).float().div_(255.0)
        if tuple(t.shape[-2:]) != (resolution, resolution):
            t = F.interpolate(t, size=(resolution, resolution), mode="bilinear",
                              align_corners=False, antialias=t.shape[-1] > resolution)
        out.append(t)
    return torch.cat(out)


def splits_from_raw(name: str, raw: RawImages, resolution: int) -> DataSplits:
    """Normalise with the training split's mean and std, as a deployed model must too."""
    floats = {p: _to_float(x, resolution) for p, (x, _) in raw.splits.items()}
    train = floats["train"].double()
    mean, std = float(train.mean()), float(train.std())
    std = std if std > 0 else 1.0

    def split(part: str) -> Split:
        x = ((floats[part] - mean) / std).float()
        return Split(x, torch.from_numpy(raw.splits[part][1].astype(np.int64)))

    return DataSplits(
        name=name,
        train=split("train"),
        val=split("val"),
        test=split("test"),
        num_classes=len(raw.classes),
        in_channels=int(raw.splits["train"][0].shape[1]),
        resolution=resolution,
        mean=mean,
        std=std,
        pixel_scale=255.0,
        classes=raw.classes,
    )


def _from_files(reader: readers.Reader) -> Callable[[DataSpec, int, Path | None], DataSplits]:
    def load(spec: DataSpec, resolution: int, cache_dir: Path | None) -> DataSplits:
        raw = cached_raw(spec, reader, resolution, cache_dir)
        name = Path(spec.path).name if spec.path else spec.name
        return splits_from_raw(name, raw, resolution)

    return load


SOURCES: dict[str, Source] = {
    "digits": Source(lambda spec, resolution, cache: load_digits_splits(resolution)),
    "mnist": Source(_from_files(torchvision_files.MNIST), uses_data_dir=True),
    "fashion-mnist": Source(_from_files(torchvision_files.FASHION_MNIST), uses_data_dir=True),
    "cifar10": Source(_from_files(torchvision_files.CIFAR10), uses_data_dir=True),
    "imagefolder": Source(_from_files(readers.IMAGE_FOLDER), takes_path=True),
}
