"""``profile calibrate --runtime litert``'s files: each ONNX micro-model as a LiteRT file.

The micro-models are built as calibration always builds them (``calibrate.build_micro_models``:
the ONNX graphs, and their int8 variants quantized by the search's own quantizer); each is then
converted through its torch twin (``onnx_twin``) with LiteRT's converter, at the precision each
of its nodes has in the ONNX file: float, full-integer int8, or int8 in the nodes the plan
quantizes (a network's front or back half, a sampled network's int8 stages). The twin is built
from the float graph the variant was quantized from, as a trial converts its float torch model:
onnxruntime's quantizer rewrites hard-swish as hard-sigmoid times x, LiteRT's converter keeps
one HARD_SWISH operator, and the calibration must time what trials run. The timed file is
the .tflite; the layers the fit reads stay the ONNX graph's (``Built.graph``), read as LiteRT
runs it, so the fitted profile predicts the search's ONNX files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.litert import convert_float, convert_int8
from edgeshrink.evaluators.onnx_twin import OnnxTwin
from edgeshrink.hardware_profiles.calibrate import MICRO_BENCHMARKS, Built, MicroBench
from edgeshrink.hardware_profiles.calibrate.timing import build_micro_models
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.runtimes import RUNTIMES

READING = RUNTIMES["litert"].reading
# ONNX variants LiteRT converts to the same file: its converter has one int8 activation scheme,
# so the symmetric-activation variant would time the plain int8 file twice.
SAME_IN_LITERT = frozenset({"int8_symmetric"})
CALIBRATION_IMAGES = 16  # as the ONNX variants are calibrated (calibrate.timing._int8)


def _int8_of(twin: OnnxTwin, model: onnx.ModelProto) -> Callable[[str], bool] | None:
    """Which twin modules run at int8, as the ONNX file runs them; None when every weighted
    layer does (a full-integer file)."""
    layers = analyse_graph(model, READING)
    int8 = {la.name for la in layers if la.precision == "int8"}
    if all(la.precision == "int8" for la in layers if la.weight_elements):
        return None
    return lambda path: twin.onnx_name(path) in int8


def _float_source(built: Built) -> Path:
    """The float ONNX a variant was quantized from: ``build_micro_models`` names a variant's
    file by its float one plus ``_<precision>`` (a float model is its own source)."""
    source = built.path.with_name(built.path.name.replace(f"_{built.precision}.onnx", ".onnx"))
    if not source.is_file():
        raise EdgeshrinkError(f"{built.path.name}: its float model {source.name} is missing")
    return source


def tflite_twin(built: Built) -> Built:
    """``built``'s ONNX file converted to .tflite beside it; the ONNX stays its graph."""
    model = onnx.load(str(built.path))
    twin = OnnxTwin(onnx.load(str(_float_source(built)))).eval()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(CALIBRATION_IMAGES, *built.shape[1:]))
                              .astype(np.float32))
    if "int8" in {la.precision for la in analyse_graph(model, READING)}:
        data = convert_int8(twin, images, images[:1], _int8_of(twin, model))
    else:
        data = convert_float(twin, images[:1])
    path = built.path.with_suffix(".tflite")
    path.write_bytes(data)
    return Built(built.label, built.length, built.precision, path, built.shape, built.path)


def tflite_micro_models(workdir: Path, precisions: tuple[str, ...],
                        benchmarks: tuple[MicroBench, ...] = MICRO_BENCHMARKS) -> list[Built]:
    """Every micro-model as a .tflite in ``workdir``, in timing order (``calibrate``'s
    ``build``)."""
    return [tflite_twin(b) for b in build_micro_models(workdir, precisions, benchmarks)
            if b.precision not in SAME_IN_LITERT]
