"""LiteRT (TensorFlow Lite) files from a torch model, and the interpreter that runs them.

Phones (Android's LiteRT), TFLite Micro and the Coral Edge TPU's compiler take ``.tflite`` files,
not ONNX. Converting from the trial's torch weights with Google's maintained converter
(``litert-torch``) avoids an ONNX-to-TensorFlow detour through unmaintained tools. Both packages
are the optional ``[tflite]`` extra (about 930 MiB with jax); they are imported only here and only
when called, so nothing else pays their import time.

int8 is full-integer (int8 input and output, every kernel integer), which the Edge TPU compiler
and TFLite Micro require: PT2E per-channel symmetric weights, activations calibrated on the
images given (the same training images the ONNX int8 used).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.hardware_profiles.litert_timing import as_input, native_quiet
from edgeshrink.hardware_profiles.runtimes import LITERT_INSTALL as EXTRA_HINT


class LiteRTMissing(EdgeshrinkError):
    """The [tflite] extra is not installed."""


class ConversionRefused(EdgeshrinkError):
    """The converter rejected the graph; the message names the operator where it can."""


def require_litert(what: str = "--format tflite") -> None:
    """One line saying how to install the extra, before any work is done."""
    try:
        with _quiet():  # importing the converter logs a page of C++ start-up lines
            import ai_edge_litert.interpreter  # noqa: F401
            import litert_torch  # noqa: F401
    except ImportError as exc:
        raise LiteRTMissing(f"{what} needs LiteRT ({exc.name} is not installed): "
                            f"{EXTRA_HINT}") from None


def interpreter_available() -> bool:
    """LiteRT's interpreter alone (a device that only runs .tflite files needs no converter)."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter prints progress lines, and its C++ parts (and the interpreter's delegate)
    log to the process's stderr, for every stage; a search or an export prints its own one-line
    summary instead. Both file descriptors are silenced, not only Python's streams."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with (native_quiet(1, 2), warnings.catch_warnings(),
          contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())):
        warnings.simplefilter("ignore")
        logging.getLogger("absl").setLevel(logging.ERROR)
        yield


def _refused(exc: Exception) -> ConversionRefused:
    # torch.fx appends "While executing ... Original traceback: ..." pages to the cause.
    text = " ".join(str(exc).split("While executing")[0].split())
    op = next((w for w in text.replace("'", " ").replace('"', " ").split()
               if w.startswith(("aten.", "aten::", "tfl."))), None)
    where = f"operator {op.rstrip('.,:;')}" if op else "the graph"
    return ConversionRefused(f"the LiteRT converter rejected {where}: {text[:200]}")


def convert_float(model: nn.Module, example: torch.Tensor) -> bytes:
    """fp32 ``.tflite`` bytes; input and output keep the torch layout (NCHW) and dtype."""
    require_litert()  # also imports the converter quietly
    import litert_torch

    model = model.eval().cpu()
    try:
        with _quiet(), torch.no_grad():
            return bytes(litert_torch.convert(model, (example[:1].cpu(),)).model_content())
    except Exception as exc:  # the converter raises many types; each is one refused graph
        raise _refused(exc) from None


def _quantizer(int8_of: Callable[[str], bool] | None) -> Any:
    """PT2E's quantizer for every module, or (``int8_of``) only for modules whose path it
    accepts. The quantizer's own ``set_module_name`` cannot leave the rest float (it asserts a
    config) and misreads torch.export's module paths, so the partial one annotates with the
    same per-operator annotators through a filter on each node's module path."""
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.pt2e_quantizer_utils import OP_TO_ANNOTATOR, propagate_annotation

    config = get_symmetric_quantization_config(is_per_channel=True)
    if int8_of is None:
        return PT2EQuantizer().set_global(config)

    def chosen(node: Any) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        if not stack and node.op != "call_function":
            return True  # a weight or constant: its operator decides
        return int8_of(list(stack.values())[-1][0] if stack else "")

    class Partial(PT2EQuantizer):
        def annotate(self, graph: Any) -> Any:
            for op in self.STATIC_OPS:
                OP_TO_ANNOTATOR[op](graph, self.global_config, chosen)
            propagate_annotation(graph)
            return graph

    return Partial().set_global(config)


def convert_int8(model: nn.Module, calibration: torch.Tensor, example: torch.Tensor,
                 int8_of: Callable[[str], bool] | None = None) -> bytes:
    """Full-integer int8 ``.tflite`` bytes, activations calibrated on ``calibration``; with
    ``int8_of`` (a module path -> whether it runs at int8), only those modules are quantized and
    LiteRT converts at the boundaries, as a mixed-precision plan asks."""
    require_litert()
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = _quantizer(int8_of)
    args = (example[:1].cpu(),)
    try:
        with _quiet(), torch.no_grad():
            graph = torch.export.export(model.eval().cpu(), args).module()
            prepared = prepare_pt2e(graph, quantizer)
            for image in calibration.cpu():  # the exported graph is batch 1
                prepared(image[None])
            quantized = convert_pt2e(prepared, fold_quantize=False)
            return bytes(litert_torch.convert(
                quantized, args, quant_config=QuantConfig(pt2e_quantizer=quantizer))
                .model_content())
    except Exception as exc:
        raise _refused(exc) from None


@dataclass(frozen=True)
class _Port:
    index: int
    dtype: type
    scale: float
    zero_point: int


class TfliteRunner:
    """One LiteRT interpreter over a ``.tflite`` file or its bytes, batch 1, ``threads`` threads.

    LiteRT applies its default CPU delegate (XNNPACK, the kernels Android and Raspberry Pi OS
    use) unless told otherwise. Integer inputs and outputs are (de)quantized here with the
    file's own scale and zero point, so callers always pass and get float32.
    """

    def __init__(self, model: Path | str | bytes, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        content = model if isinstance(model, bytes) else Path(model).read_bytes()
        with _quiet():
            self.interpreter = Interpreter(model_content=content, num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self._port(self.interpreter.get_input_details()[0])
        self.output = self._port(self.interpreter.get_output_details()[0])
        self.input_shape = tuple(self.interpreter.get_input_details()[0]["shape"])

    @staticmethod
    def _port(detail: dict) -> _Port:
        scale, zero = detail.get("quantization", (0.0, 0))
        return _Port(detail["index"], detail["dtype"], float(scale), int(zero))

    @property
    def integer_io(self) -> bool:
        return np.issubdtype(self.input.dtype, np.integer)

    def _feed(self, x: np.ndarray) -> None:
        detail = self.interpreter.get_input_details()[0]
        self.interpreter.set_tensor(self.input.index, as_input(x, detail))

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Float logits for every image of ``x`` (N, C, H, W), one invoke per image."""
        out = []
        for image in x:
            self._feed(image[None].astype(np.float32, copy=False))
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output.index)
            if np.issubdtype(self.output.dtype, np.integer):
                y = (y.astype(np.float32) - self.output.zero_point) * self.output.scale
            out.append(y.reshape(-1))
        return np.stack(out)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(1)

    def time_ms(self, x: np.ndarray, repeats: int = 50, warmup: int = 10) -> np.ndarray:
        """Per-invoke wall times in ms on one image, after ``warmup`` untimed invokes."""
        self._feed(x[:1].astype(np.float32, copy=False))
        for _ in range(warmup):
            self.interpreter.invoke()
        times = np.empty(repeats)
        for i in range(repeats):
            start = time.perf_counter()
            self.interpreter.invoke()
            times[i] = (time.perf_counter() - start) * 1e3
        return times
