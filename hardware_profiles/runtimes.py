"""What a measured profile times a file with, by its ``[measurement] runtime``.

``onnxruntime`` runs the search's .onnx file itself. ``litert`` runs a .tflite converted from the
same torch model (``evaluators.litert_artifact`` converts: the converter needs torch, which the
profile side never imports) with LiteRT's default XNNPACK delegate. Each entry opens one file for
single-sample runs, names the graph reading its kernels match (what ``profile calibrate`` fits
on) and what a measured search with it needs installed; measure.py, calibrate and the search's
option check read this table.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeshrink.hardware_profiles.litert_timing import open_tflite

if TYPE_CHECKING:
    import onnxruntime as ort

Run = Callable[[], object]


def make_session(model_path: Path | str, threads: int = 1) -> ort.InferenceSession:
    import onnxruntime as ort  # here: the search's option check reads RUNTIMES, not sessions

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def open_onnx(path: Path | str, sample: np.ndarray, threads: int = 1) -> Run:
    """An onnxruntime session on ``path`` fed ``sample[:1]``; returns one run."""
    session = make_session(path, threads)
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(sample[:1], dtype=np.float32)}
    return lambda: session.run(None, feed)


@dataclass(frozen=True)
class Runtime:
    name: str
    suffix: str  # the file it runs
    reading: str  # graph_layers reading whose kernel names are this runtime's kernels
    open: Callable[[Path | str, np.ndarray, int], Run]
    needs: tuple[str, ...] = ()  # modules beyond the base install: interpreter, converter
    install: str = ""

    def missing(self, what: str) -> str | None:
        """One line naming the first missing module and how to install it; None if none is."""
        absent = next((m for m in self.needs if importlib.util.find_spec(m) is None), None)
        if absent is None:
            return None
        return f"{what} needs {self.name} ({absent} is not installed): {self.install}"


LITERT_INSTALL = ('pip install -c constraints.txt "edgeshrink[tflite]" (or -e ".[tflite]" in a '
                  "checkout)")

RUNTIMES: dict[str, Runtime] = {
    "onnxruntime": Runtime("onnxruntime", ".onnx", "onnxruntime_layout", open_onnx),
    "litert": Runtime("LiteRT", ".tflite", "litert", open_tflite,
                      ("ai_edge_litert", "litert_torch"), LITERT_INSTALL),
}
