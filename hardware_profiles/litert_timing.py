"""One .tflite file opened for single-sample runs with LiteRT's interpreter, as measure.py times it.

LiteRT applies its default CPU delegate, XNNPACK (the kernels Android and Raspberry Pi OS run),
to every operator it supports and its built-in kernels to the rest, exactly as an app that
opens the file does. Only ``ai_edge_litert`` is needed here, not the converter or torch: the
profile side times files; ``evaluators.litert`` makes them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def native_quiet(*fds: int) -> Iterator[None]:
    """The interpreter's C++ side logs a line per delegate it creates, on file descriptor 2 (the
    converter's also on 1); a search that times a file per trial prints its own summary instead.
    Silences ``fds`` (default: 2) at the descriptor, which Python's redirects cannot reach."""
    fds = fds or (2,)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved, null = [os.dup(fd) for fd in fds], os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(null, fd)
        yield
    finally:
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


def as_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float images as the file's input: quantized with its scale and zero point where it takes
    integers (a full-integer int8 file), else float32."""
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return np.ascontiguousarray(x, dtype=np.float32)
    scale, zero = detail.get("quantization", (0.0, 0))
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def open_tflite(path: Path | str, sample: np.ndarray, threads: int = 1) -> Callable[[], object]:
    """An interpreter on ``path`` with ``sample[:1]`` set as its input; returns one run."""
    from ai_edge_litert.interpreter import Interpreter

    with native_quiet():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], as_input(sample[:1], detail))
    return interpreter.invoke
