"""A trial's LiteRT (``.tflite``) files: converted from its torch model, checked, then shipped.

The search measured an ONNX file, so a ``.tflite`` is a second file that must earn the same
trust: each is run in LiteRT's interpreter on the validation split before it may be written.
The fp32 file must predict the class the trial's own fp32 ONNX predicts (or, where its weights
could not be taken from that file, an fp32 ONNX of the same weights) on at least 99.5% of them;
the full-integer int8 file, calibrated on the same training images as the ONNX int8, may score at
most 1 point below the trial's ONNX artifact (scoring higher is no reason to refuse it).

The converted model is the trial's rebuilt architecture with ``weights.pt`` loaded and BatchNorm
folded, then given the folded float weights the search itself quantized (the trial's
``model_fp32.onnx``) wherever that file holds every one of them: after quantization-aware
fine-tuning those differ from ``weights.pt``, which is saved before it. Heavy imports (torch, the
converter) wait until a file is really converted, so the command line parses formats cheaply.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeshrink.core.errors import EdgeshrinkError

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from edgeshrink.evaluators.data.splits import DataSplits
    from edgeshrink.evaluators.litert import TfliteRunner
    from edgeshrink.spaces.families import AnyCandidate

FORMATS = ("onnx", "tflite")  # `export --format`; onnx (the measured file) is the default
FP32_FILE = "model_fp32.tflite"
INT8_FILE = "model_int8.tflite"
MEASURED_FP32 = "model_fp32.onnx"  # the pipeline's folded float export, quantized into model.onnx
MIN_AGREEMENT = 0.995  # fp32 .tflite: share of validation images with the fp32 ONNX's argmax
MAX_INT8_DROP = 0.01  # int8 .tflite: accuracy at most this far below the ONNX int8's
CORAL_PROFILE = "coral-edge-tpu"


class TfliteRefused(EdgeshrinkError):
    """A converted file does not reproduce the trial's accuracy; it is not written."""


def parse_formats(text: str) -> tuple[str, ...]:
    """``onnx,tflite`` -> ("onnx", "tflite"); an unknown or empty name is one line."""
    names = [n.strip().lower() for n in str(text).split(",")]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise EdgeshrinkError(f"unknown export format {unknown[0]!r} in --format {text}; "
                              f"choose from {', '.join(FORMATS)} (comma list)")
    return tuple(f for f in FORMATS if f in names)


def int8_reason(candidate: AnyCandidate) -> str | None:
    """Why a trial gets no int8 file (None: it gets one). Only a trial with int8 stages has an
    ONNX int8 accuracy to check a full-integer file against."""
    precisions = sorted({candidate.precision, *candidate.stage_precisions})
    if "int8" in precisions:
        return None
    return (f"the trial is {'/'.join(precisions)}, not int8, so there is no ONNX int8 accuracy "
            "to check a full-integer file against; only the fp32 .tflite is shipped")


@dataclass(frozen=True)
class TfliteFile:
    name: str
    precision: str  # "fp32", or "int8" (full integer: int8 input, output and kernels)
    validation_accuracy: float
    test_accuracy: float
    check: str  # what it was verified against, for the model card
    content: bytes = field(repr=False)

    def record(self) -> dict[str, Any]:
        return {"file": self.name, "precision": self.precision, "size_bytes": len(self.content),
                "validation_accuracy": self.validation_accuracy,
                "test_accuracy": self.test_accuracy, "check": self.check}


@dataclass(frozen=True)
class TfliteExport:
    files: tuple[TfliteFile, ...]
    weights: str  # where the converted weights came from
    no_int8: str | None = None  # why there is no int8 file
    notes: tuple[str, ...] = ()  # e.g. what to do with the file for a Coral Edge TPU

    def write(self, directory: Path) -> list[str]:
        for f in self.files:
            (directory / f.name).write_bytes(f.content)
        return [f.name for f in self.files]

    def record(self) -> dict[str, Any]:
        """What ``metrics.json`` keeps under ``tflite``."""
        from importlib import metadata

        return {"files": [f.record() for f in self.files], "weights": self.weights,
                "converter": f"litert-torch {metadata.version('litert-torch')}",
                **({"no_int8": self.no_int8} if self.no_int8 else {}),
                **({"notes": list(self.notes)} if self.notes else {})}


def export_tflite(source: Path, candidate: AnyCandidate, data: DataSplits, onnx_accuracy: float,
                  calibration_samples: int, profile: str) -> TfliteExport:
    """Convert trial directory ``source`` into checked ``.tflite`` bytes (nothing is written).

    ``onnx_accuracy`` is the trial's ONNX artifact's validation accuracy (the int8 reference).
    Raises ``LiteRTMissing``, ``ConversionRefused`` (the converter rejected the graph) or
    :class:`TfliteRefused` (a file missed its check; the line names both figures).
    """
    from edgeshrink.evaluators.litert import require_litert

    require_litert()
    rebuilt = trial_float_model(source, candidate, data)
    files = [_fp32_file(rebuilt.model, data, rebuilt.measured)]
    no_int8 = int8_reason(candidate)
    if no_int8 is None:
        others = sorted({candidate.precision, *candidate.stage_precisions} - {"int8"})
        files.append(_int8_file(rebuilt.model, data, onnx_accuracy, calibration_samples, others))
    return TfliteExport(tuple(files), rebuilt.weights, no_int8,
                        compiler_notes(profile, no_int8 is None))


@dataclass(frozen=True)
class FloatModel:
    model: nn.Module  # BatchNorm folded, eval mode, ready for the converter
    weights: str  # where its weights came from, for the model card
    measured: Path | None  # the trial's fp32 ONNX it took them from, if it did


def trial_float_model(source: Path, candidate: AnyCandidate, data: DataSplits) -> FloatModel:
    """The BatchNorm-folded float model of trial directory ``source`` (see the module
    docstring for which weights)."""
    from edgeshrink.evaluators.rescore import WEIGHTS_FILE, trial_model
    from edgeshrink.spaces.bn_folding import fold_batchnorm

    folded = fold_batchnorm(trial_model(source, candidate, data).eval())
    measured = _measured_weights(source / MEASURED_FP32, folded.state_dict())
    if measured is None:
        return FloatModel(convertible(folded), (
            f"{WEIGHTS_FILE} with BatchNorm folded (the trial's {MEASURED_FP32} is missing or "
            "does not match: for a QAT trial these are the weights before its "
            "quantization-aware fine-tune)"), None)
    folded.load_state_dict(measured)
    return FloatModel(convertible(folded), (
        f"the folded float weights the search quantized (the trial's {MEASURED_FP32}, after any "
        "quantization-aware fine-tune)"), source / MEASURED_FP32)


def convertible(model: nn.Module) -> nn.Module:
    """``model`` with a grey-to-RGB input wrapper that repeats the image by concatenation: the
    same values, but LiteRT's int8 ``BROADCAST_TO`` of ``expand`` fails to prepare (litert-torch
    0.10.0, reproduced on a one-conv model) and ``repeat`` is mis-lowered."""
    import torch
    from torch import nn

    from edgeshrink.spaces.base_model.load import GreyToRGB

    if not isinstance(model, GreyToRGB):
        return model

    class ConcatGreyToRGB(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(torch.cat((x, x, x), 1))

    return ConcatGreyToRGB(model.inner).eval()


def _measured_weights(path: Path, state: dict[str, Any]) -> dict[str, Any] | None:
    """``state`` with every tensor taken from ``path``'s initializers of the same name and shape,
    or None where the file is missing or lacks any of them."""
    if not path.is_file():
        return None
    import onnx
    import torch
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx.load(str(path)).graph.initializer}
    out = {}
    for name, tensor in state.items():
        init = inits.get(name)
        if init is None or tuple(init.dims) != tuple(tensor.shape):
            return None
        out[name] = torch.from_numpy(numpy_helper.to_array(init).copy()).to(tensor.dtype)
    return out


def _fp32_file(model: nn.Module, data: DataSplits, measured: Path | None) -> TfliteFile:
    """Checked against the trial's own fp32 ONNX where ``model`` took its weights from it (so
    a misread weight is caught too), else against an fp32 ONNX exported from ``model``."""
    from edgeshrink.evaluators.litert import convert_float

    x, y = data.val.x.numpy(), data.val.y.numpy()
    content = convert_float(model, data.val.x[:1])
    runner, ours = _run(content, x, "fp32")
    reference = _onnx_classes(model, data, measured)
    agreement = float((ours == reference).mean())
    acc, ref_acc = _accuracy(ours, y), _accuracy(reference, y)
    if agreement < MIN_AGREEMENT:
        raise TfliteRefused(
            f"the fp32 .tflite predicts the fp32 ONNX's class on {agreement:.2%} of the "
            f"{len(y)} validation images, below the {MIN_AGREEMENT:.1%} required (validation "
            f"accuracy {acc:.4f} against the ONNX's {ref_acc:.4f})")
    return TfliteFile(FP32_FILE, "fp32", acc, _accuracy(runner.predict(data.test.x.numpy()),
                                                        data.test.y.numpy()),
                      f"predicts the fp32 ONNX's class on {agreement:.2%} of {len(y)} "
                      f"validation images (ONNX accuracy {ref_acc:.4f})", content)


def _onnx_classes(model: nn.Module, data: DataSplits, measured: Path | None) -> np.ndarray:
    from edgeshrink.evaluators.onnx_eval import onnx_predict
    from edgeshrink.evaluators.onnx_export import export_onnx

    if measured is not None:
        return onnx_predict(measured, data.val.x.numpy())
    tmp = Path(tempfile.mkdtemp(prefix="edgeshrink-tflite-"))
    try:
        export_onnx(model, tmp / "fp32.onnx", data.in_channels, data.resolution)
        return onnx_predict(tmp / "fp32.onnx", data.val.x.numpy())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _int8_file(model: nn.Module, data: DataSplits, onnx_accuracy: float,
               calibration_samples: int, others: list[str]) -> TfliteFile:
    """Full integer even where the trial's plan is mixed (``others``: its non-int8 precisions):
    the Edge TPU compiler and TFLite Micro take nothing else."""
    from edgeshrink.evaluators.litert import convert_int8

    content = convert_int8(model, data.train.x[:calibration_samples], data.val.x[:1])
    runner, predictions = _run(content, data.val.x.numpy(), "int8")
    acc = _accuracy(predictions, data.val.y.numpy())
    if acc < onnx_accuracy - MAX_INT8_DROP - 1e-12:
        raise TfliteRefused(
            f"the int8 .tflite scores validation accuracy {acc:.4f}, more than "
            f"{MAX_INT8_DROP * 100:g} point below the ONNX int8's {onnx_accuracy:.4f}")
    return TfliteFile(INT8_FILE, "int8", acc, _accuracy(runner.predict(data.test.x.numpy()),
                                                        data.test.y.numpy()),
                      f"the trial's ONNX int8 scores {onnx_accuracy:.4f} (at most "
                      f"{MAX_INT8_DROP * 100:g} point lower allowed); calibrated on the same "
                      f"{calibration_samples} training images"
                      + (f"; every layer int8, where the trial kept some at {'/'.join(others)}"
                         if others else ""), content)


def _run(content: bytes, x: np.ndarray, precision: str) -> tuple[TfliteRunner, np.ndarray]:
    """The interpreter over ``content`` and its classes for ``x``. A converted file LiteRT cannot
    run (the converter can emit one: int8 ``BROADCAST_TO`` of a grey image expanded to RGB) is
    refused like a rejected graph, in one line."""
    from edgeshrink.evaluators.litert import TfliteRunner

    try:
        runner = TfliteRunner(content)
        return runner, runner.predict(x)
    except (RuntimeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        raise TfliteRefused(f"LiteRT's interpreter cannot run the converted {precision} file: "
                            f"{text[:200]}") from None


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float((predictions == labels).mean())


def compiler_notes(profile: str, has_int8: bool) -> tuple[str, ...]:
    """What the Coral Edge TPU needs beyond this file: Coral's own compiler, which this
    machine cannot run for you (it is not installed here, or edgeshrink does not call it)."""
    if profile != CORAL_PROFILE:
        return ()
    if not has_int8:
        return ("profile coral-edge-tpu: the Edge TPU runs only full-integer int8 models, and "
                "this trial has no int8 file",)
    here = ("this machine cannot run that compiler (edgetpu_compiler is not installed here)"
            if shutil.which("edgetpu_compiler") is None else
            "edgeshrink does not run that compiler for you")
    return (f"profile coral-edge-tpu: {INT8_FILE} (full-integer int8) is the file Coral's "
            f"`edgetpu_compiler` takes; {here}: run `edgetpu_compiler {INT8_FILE}` on a 64-bit "
            "x86 Debian or Ubuntu machine and deploy the `model_int8_edgetpu.tflite` it writes",)
