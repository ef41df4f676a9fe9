"""Accuracy of an exported ONNX file, computed by onnxruntime: the artifact, not the torch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def onnx_predict(model_path: Path | str, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class predictions; single-threaded and unoptimised-deterministic so reruns agree exactly."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    preds = [
        session.run(None, {name: x[i : i + batch_size].astype(np.float32)})[0].argmax(1)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(preds)


def onnx_accuracy(model_path: Path | str, x: np.ndarray, y: np.ndarray) -> float:
    return float((onnx_predict(model_path, x) == y).mean())


def confusion_matrix(
    predictions: np.ndarray, labels: np.ndarray, num_classes: int
) -> list[list[int]]:
    """Rows are true classes, columns predictions: which classes a compressed model confuses."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return counts.tolist()
