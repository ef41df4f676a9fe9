"""The file a measured profile times: the exported ONNX itself, or its LiteRT twin.

A profile whose ``[measurement] runtime`` is ``litert`` (``host-litert``) times a .tflite made
from the same folded torch model the ONNX file was exported from, by LiteRT's own converter
(``evaluators.litert``): converting the ONNX file instead would time a third tool's graph. The
precision plan decides the conversion:

- no int8 anywhere: fp32 .tflite;
- int8 everywhere: full-integer int8 (int8 input and output, every kernel integer);
- int8 in some stages only: those modules quantized, LiteRT's Quantize / Dequantize between them
  and the float ones, as the ONNX file has QDQ boundaries there;
- fp16 and int4 stages convert as float: this machine has no LiteRT kernels for them, and a plan
  that uses them is only simulated here, so ``artifact_latency`` predicts it and never asks.

LiteRT's int8 scheme is its own (PT2E: int8 activations, per-channel symmetric weights); the
plan's activation symmetry and 7-bit weight range describe the ONNX file only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgeshrink.core.atomic import atomic_write_bytes
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.litert import convert_float, convert_int8
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.spaces.quantization.fake_quant import onnx_scope
from edgeshrink.spaces.quantization.plan import QuantPlan


@dataclass(frozen=True)
class TorchSource:
    """What an ONNX artifact was exported from, for runtimes that convert the model themselves."""

    model: nn.Module  # BatchNorm folded (or QAT finished): the exported weights
    plan: QuantPlan
    calibration: torch.Tensor  # the images the ONNX int8 activations were calibrated on
    example: torch.Tensor  # one input


def _module_int8(model: nn.Module, plan: QuantPlan) -> Callable[[str], bool]:
    """Whether the module at a path runs at int8: the plan's node-name prefixes, matched on the
    ONNX scope its nodes get (as QAT picks its modules)."""
    def int8_of(path: str) -> bool:
        try:
            scope = onnx_scope(model, path)
        except KeyError:  # a path torch.export made up (a functional call): the default
            scope = "/"
        return plan.precision_of(scope) == "int8"

    return int8_of


def tflite_bytes(source: TorchSource) -> bytes:
    """The LiteRT file for ``source``'s plan (see the module's docstring)."""
    precisions = source.plan.precisions
    if "int8" not in precisions:
        return convert_float(source.model, source.example)
    partial = None if precisions == {"int8"} else _module_int8(source.model, source.plan)
    return convert_int8(source.model, source.calibration, source.example, partial)


def _tflite(artifact: Path, source: TorchSource | None, dst: Path | None) -> Path:
    if source is None:
        raise EdgeshrinkError(f"{artifact.name}: LiteRT times a .tflite converted from the torch "
                              "model, and none was given")
    return atomic_write_bytes(dst or artifact.with_suffix(".tflite"), tflite_bytes(source))


# [measurement] runtime -> the file it times, from the ONNX artifact and its torch source.
TIMED_FILES: dict[str, Callable[[Path, TorchSource | None, Path | None], Path]] = {
    "onnxruntime": lambda artifact, source, dst: artifact,
    "litert": _tflite,
}


def timed_file(artifact: Path, profile: Profile, source: TorchSource | None,
               dst: Path | None = None) -> Path:
    """The file ``profile`` times for ``artifact`` (written to ``dst``, else next to it); a
    predicted profile reads the ONNX graph itself."""
    if profile.latency_method != "measured":
        return artifact
    return TIMED_FILES[profile.measurement.runtime](Path(artifact), source, dst)
