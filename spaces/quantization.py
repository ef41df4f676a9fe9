"""Precisions behind a registry, realised on the exported ONNX file with onnxruntime's tool."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeshrink.spaces.quantization_choices import PRECISIONS


class _ArrayReader:
    """Feeds calibration samples one at a time, as onnxruntime's CalibrationDataReader expects."""

    def __init__(self, input_name: str, samples: np.ndarray):
        self._iter = iter(samples[i : i + 1] for i in range(len(samples)))
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {self._name: batch.astype(np.float32)}

    def rewind(self) -> None:  # pragma: no cover - required by newer onnxruntime readers
        pass


def keep_fp32(src: Path, dst: Path, calibration: np.ndarray) -> None:
    shutil.copyfile(src, dst)


def int8_static(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Static int8 QDQ: per-channel symmetric int8 weights, uint8 activations calibrated on data."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prep.onnx"
        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
        import onnx

        input_name = onnx.load(str(prepped)).graph.input[0].name
        quantize_static(
            str(prepped),
            str(dst),
            _ArrayReader(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


QUANTIZERS: dict[str, Callable[[Path, Path, np.ndarray], None]] = {
    "fp32": keep_fp32,
    "int8": int8_static,
}
assert set(QUANTIZERS) == set(PRECISIONS)


def quantize(precision: str, src: Path, dst: Path, calibration: np.ndarray) -> None:
    QUANTIZERS[precision](Path(src), Path(dst), calibration)
