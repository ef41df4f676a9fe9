"""Where training runs: resolving ``--device``, mixed precision on CUDA, and what a trial records.

Training, distillation, fine-tuning, QAT and supernet training run on the device; ONNX export
and onnxruntime scoring stay on the CPU, where the artifact is measured.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from typing import Any

import torch

from edgeshrink.core.errors import EdgeshrinkError


class TrainingOutOfMemory(EdgeshrinkError):
    """The GPU ran out of memory: that trial fails with this message, the study goes on."""


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(text: str, worker: int = 0) -> str:
    """The torch device a process trains on, or a one-line error if this machine lacks it.

    ``auto`` is CUDA when torch sees it, else the CPU. ``auto`` and ``cuda`` without an index
    give worker ``i`` the GPU ``i mod n``, so ``--jobs N`` spreads over the GPUs there are.
    """
    kind, _, index = text.partition(":")
    if kind == "cpu":
        return "cpu"
    if kind == "mps":
        if not _mps_available():
            raise EdgeshrinkError(
                f"--device mps: this machine has no Apple-silicon GPU torch can use ("
                f"{platform.system()}, torch {torch.__version__}); use --device cpu or auto")
        return "mps"
    count = _cuda_count()
    if kind == "auto" and count == 0:
        return "cpu"
    if count == 0:
        built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
        raise EdgeshrinkError(f"--device {text}: torch sees no CUDA GPU here (torch "
                              f"{torch.__version__}, built with {built}); use --device cpu "
                              "or auto")
    if index:
        if int(index) >= count:
            raise EdgeshrinkError(f"--device {text}: this machine has {count} CUDA GPU(s), "
                                  f"cuda:0..cuda:{count - 1}")
        return f"cuda:{int(index)}"
    return f"cuda:{worker % count}"


def autocast_dtype(device: str) -> torch.dtype | None:
    """Mixed precision on CUDA: bf16 where the GPU supports it (no loss scaling needed), else
    fp16 with a grad scaler; None (full fp32) elsewhere, where autocast does not pay."""
    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: str, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype):
            yield


def grad_scaler(device: str, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(device.split(":")[0])


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's and MPS's out-of-memory errors (MPS raises a RuntimeError saying so)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def release_memory(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def describe_device(device: str) -> dict[str, Any]:
    """What a trial records about where it trained."""
    out: dict[str, Any] = {"device": device, "torch": torch.__version__,
                           "cuda_version": torch.version.cuda}
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    else:
        out["gpu"] = "Apple MPS" if device == "mps" else None
    return out
