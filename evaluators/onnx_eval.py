"""Accuracy of an exported ONNX file, computed by onnxruntime: the artifact, not the torch model.

``method`` (hardware_profiles.int8_arithmetic.ACCURACY_METHODS) says whose int8 arithmetic the
accuracy stands for: "reference" runs the QDQ graph as written (dequantize, float op, quantize;
no integer kernels, so no saturation on any CPU), "host" runs this machine's fused int8 kernels.
Float files score the same either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.hardware_profiles.int8_arithmetic import ACCURACY_METHODS

_OPTIMIZATION = {
    "reference": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "host": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
assert set(_OPTIMIZATION) == set(ACCURACY_METHODS)


def onnx_predict(model_path: Path | str, x: np.ndarray, batch_size: int = 256,
                 method: str = "host") -> np.ndarray:
    """Class predictions; single-threaded so reruns agree exactly."""
    if method not in _OPTIMIZATION:
        raise EdgeshrinkError(f"accuracy method must be one of {sorted(_OPTIMIZATION)}; "
                              f"got {method!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = _OPTIMIZATION[method]
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    preds = [
        session.run(None, {name: x[i : i + batch_size].astype(np.float32)})[0].argmax(1)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(preds)


def onnx_accuracy(model_path: Path | str, x: np.ndarray, y: np.ndarray,
                  method: str = "host") -> float:
    return float((onnx_predict(model_path, x, method=method) == y).mean())


def confusion_matrix(
    predictions: np.ndarray, labels: np.ndarray, num_classes: int
) -> list[list[int]]:
    """Rows are true classes, columns predictions: which classes a compressed model confuses."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return counts.tolist()
