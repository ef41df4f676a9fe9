"""The graph onnxruntime really runs: the exported file after its hardware-independent rewrites.

A QDQ file is a float graph with QuantizeLinear / DequantizeLinear pairs around the layers; which
pairs become int8 kernels is the runtime's decision, not the file's. onnxruntime fuses a pair
into ``QLinearConv`` / ``QGemm`` / ``QLinearAdd`` ... only where it has a kernel for exactly that
pattern (on x86, for example, convolutions with uint8 activations, not symmetric int8 ones; no
hard-sigmoid, so a quantized hard-swish runs in float between a real Dequantize and Quantize),
and every pair it leaves runs as its own operator. Reading the graph after those rewrites
(``ORT_ENABLE_EXTENDED``: operator fusions, no CPU-specific layout changes) prices what runs.

With ``layout=True`` the graph is read after every rewrite (``ORT_ENABLE_ALL``), including this
machine's layout changes: float convolutions on blocked channels (``com.microsoft.nchwc``), int8
convolutions in NHWC, and the Reorder / Transpose nodes between them. That is exactly what runs
here, and only here: another CPU may lay the same file out differently.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

_NUMPY_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
                onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.INT8: np.int8}


def _options(level: str):
    import onnxruntime as ort  # here, not at module level: only this reading needs it

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return options


def onnxruntime_graph(model: onnx.ModelProto, layout: bool = False,
                      ) -> tuple[onnx.ModelProto, dict[str, list[int]]]:
    """``model`` as onnxruntime's CPU provider rewrites it, and every tensor's shape at batch 1.

    The shapes come from running the rewritten graph once on zeros: onnx's shape inference does
    not know onnxruntime's own operators (``QGemm``, ``FusedConv``, its int8-to-uint8
    conversions), and a wrong shape would be a wrong MAC count.
    """
    import onnxruntime as ort

    options = _options("ORT_ENABLE_ALL" if layout else "ORT_ENABLE_EXTENDED")
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        rewritten = onnx.load(options.optimized_model_filepath)
    probe = onnx.ModelProto()
    probe.CopyFrom(rewritten)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(out)
                              for node in probe.graph.node for out in node.output
                              if out and out not in known)
    session = ort.InferenceSession(probe.SerializeToString(), _options("ORT_DISABLE_ALL"),
                                   providers=["CPUExecutionProvider"])
    feeds = {}
    weights = {t.name for t in rewritten.graph.initializer}
    for vi in rewritten.graph.input:
        if vi.name in weights:
            continue
        tensor = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        feeds[vi.name] = np.zeros(dims, _NUMPY_TYPES.get(tensor.elem_type, np.float32))
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    shapes = {name: list(np.shape(v)) for name, v in zip(names, values, strict=True)}
    shapes.update({name: list(a.shape) for name, a in feeds.items()})
    return rewritten, shapes
