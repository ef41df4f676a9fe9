"""Precisions realised on the exported ONNX file, per node (mixed precision), with onnxruntime.

``quantize_with_plan`` turns a float file into one where each node runs at its plan's precision:

- fp32: left float;
- int8: onnxruntime static QDQ, per-channel symmetric int8 weights, activations calibrated on
  data (MinMax) as uint8, or as symmetric int8 with ``plan.act_symmetric``; with
  ``plan.reduce_range`` the weights take 7 bits ([-64, 64]), which x86 AVX2 kernels without
  VNNI need to compute without saturating (``hardware_profiles.cpu``);
- int4: the same with 4-bit weights (true INT4 initializers, opset 21), per-channel symmetric
  with scale max|w| / 7 (the grid ``fake_quant`` trains on; onnxruntime's own int4 scale is
  max|w| / 7.5, which clips the largest weight);
- fp16: fp16 weights and fp16-rounded activations (see ``quantization.fp16``).

The returned :class:`QuantReport` says which precisions run natively on this host and which are
simulated (exact values, fp32 kernels); where anything is simulated, host timing is not the
device's, and the profile's latency model should be used.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.spaces.quantization.fp16 import HELPER_OPS, simulate_fp16
from edgeshrink.spaces.quantization.graph import (
    WEIGHTED_OPS,
    give_layers_own_weights,
    name_unnamed_nodes,
    scope_qdq_nodes,
)
from edgeshrink.spaces.quantization.plan import QuantPlan

# How onnxruntime's CPU provider realises each precision on this host.
REALISATION: dict[str, str] = {
    "fp32": "native",
    "int8": "native",  # QDQ int8 kernels
    "fp16": "simulated",  # no fp16 Conv kernel: fp16 values, fp32 arithmetic
    "int4": "simulated",  # int4 weights are dequantized to fp32 before the Conv
}
assert set(REALISATION) == set(PRECISIONS)
INTEGER = frozenset({"int8", "int4"})
INT4_OPSET = 21  # first opset whose DequantizeLinear takes INT4


@dataclass(frozen=True)
class QuantReport:
    """How a quantized file was realised; ``dataclasses.asdict`` gives its JSON form."""

    realised: dict[str, str]  # precision used -> "native" | "simulated"
    nodes: dict[str, int]  # precision -> nodes of the float graph assigned to it
    act_symmetric: bool
    opset: int
    reduce_range: bool = False  # int8 weights on 7 bits ([-64, 64])

    @property
    def simulated(self) -> bool:
        """True when host timing of the file is not the timing of its precisions."""
        return "simulated" in self.realised.values()


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


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _weight_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of a layer's weight, the one per-channel scales run along."""
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    return 1 if node.op_type == "MatMul" else 0


def _int4_overrides(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> dict:
    """Per-channel scale max|w| / 7 and zero point 0 for the int4 layers' weights."""
    from onnxruntime.quantization import QuantType

    inits = {t.name: t for t in model.graph.initializer}
    overrides = {}
    for node in nodes:
        if node.op_type not in WEIGHTED_OPS or node.input[1] not in inits:
            continue
        axis = _weight_axis(node)
        w = np.moveaxis(numpy_helper.to_array(inits[node.input[1]]), axis, 0)
        amax = np.abs(w.reshape(len(w), -1)).max(axis=1)
        scales = np.where(amax > 0, amax / 7, 1.0).astype(np.float32)
        overrides[node.input[1]] = [
            {"quant_type": QuantType.QInt4, "axis": axis, "scale": s, "zero_point": np.int8(0)}
            for s in scales
        ]
    return overrides


def _quantize_integer(model: onnx.ModelProto, calibration: np.ndarray, plan: QuantPlan,
                      tmp: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    chosen = [n for n in model.graph.node if plan.precision_of(n.name) in INTEGER]
    int4 = [n for n in chosen if plan.precision_of(n.name) == "int4"]
    if int4 and _opset(model) < INT4_OPSET:
        model = version_converter.convert_version(model, INT4_OPSET)
    src, dst = tmp / "float.onnx", tmp / "quantized.onnx"
    onnx.save(model, src)
    quantize_static(
        str(src),
        str(dst),
        _ArrayReader(model.graph.input[0].name, calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=plan.reduce_range,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QInt8 if plan.act_symmetric else QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_quantize=[n.name for n in chosen],
        extra_options={"ActivationSymmetric": plan.act_symmetric,
                       "TensorQuantOverrides": _int4_overrides(model, int4)},
    )
    quantized = onnx.load(str(dst))
    scope_qdq_nodes(quantized, lambda name: plan.precision_of(name) in INTEGER)
    return quantized


def _prepared(src: Path, tmp: Path, integer: bool) -> onnx.ModelProto:
    """The float graph with every node named in its module's scope and owning its weights."""
    if integer:  # onnxruntime's recommended preparation for its quantizer
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(src), str(tmp / "prep.onnx"), skip_symbolic_shape=True)
        model = onnx.load(str(tmp / "prep.onnx"))
    else:  # fp16 only: keep the exported graph (the pre-processing splits HardSwish in two)
        model = onnx.load(str(src))
    name_unnamed_nodes(model)
    give_layers_own_weights(model)
    return model


def quantize_with_plan(src: Path, dst: Path, calibration: np.ndarray,
                       plan: QuantPlan) -> QuantReport:
    """Write ``src`` quantized node by node as ``plan`` says to ``dst``; calibrate int8
    activations on ``calibration`` (N x C x H x W float32, the model's preprocessed input)."""
    src, dst = Path(src), Path(dst)
    if plan.precisions == {"fp32"}:
        model = onnx.load(str(src))
        nodes = Counter("fp32" for n in model.graph.node if n.op_type not in HELPER_OPS)
        shutil.copyfile(src, dst)
    else:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            model = _prepared(src, tmp, integer=bool(plan.precisions & INTEGER))
            nodes = Counter(plan.precision_of(n.name) for n in model.graph.node
                            if n.op_type not in HELPER_OPS)
            if nodes.keys() & INTEGER:
                model = _quantize_integer(model, calibration, plan, tmp)
        if nodes["fp16"]:
            simulate_fp16(model, lambda name: plan.precision_of(name) == "fp16")
        onnx.checker.check_model(model)
        onnx.save(model, str(dst))
    used = [p for p in PRECISIONS if nodes[p]]
    return QuantReport(
        realised={p: REALISATION[p] for p in used},
        nodes={p: nodes[p] for p in used},
        act_symmetric=plan.act_symmetric,
        opset=_opset(model),
        reduce_range=plan.reduce_range and bool(nodes["int8"]),
    )


def keep_fp32(src: Path, dst: Path, calibration: np.ndarray) -> None:
    shutil.copyfile(src, dst)


def _whole_model(precision: str) -> Callable[[Path, Path, np.ndarray], None]:
    def run(src: Path, dst: Path, calibration: np.ndarray) -> None:
        quantize_with_plan(src, dst, calibration, QuantPlan(precision))

    run.__name__ = f"whole_model_{precision}"
    return run


int8_static = _whole_model("int8")  # the whole file at int8 (kept for existing callers)

QUANTIZERS: dict[str, Callable[[Path, Path, np.ndarray], None]] = {
    "fp32": keep_fp32,
    "fp16": _whole_model("fp16"),
    "int8": int8_static,
    "int4": _whole_model("int4"),
}
assert set(QUANTIZERS) == set(PRECISIONS)


def quantize(precision: str, src: Path, dst: Path, calibration: np.ndarray) -> None:
    """The whole file at one precision (see :func:`quantize_with_plan` for mixed precision)."""
    QUANTIZERS[precision](Path(src), Path(dst), calibration)
