"""Mixed precision, fp16 / int4, BatchNorm folding and QAT, on a small student trained on digits.

Accuracies are on the digits test split (360 images), read from the real quantized files run by
onnxruntime; run with ``-s`` to see them. They measure what the product promises on any CPU:
full-range int8 files in reference arithmetic (what a predicted device computes), 7-bit
(reduce-range) files on this machine's own kernels (what a search on a measured host ships);
``test_full_range_weights_saturate_avx2_pair_sums`` reproduces the x86 AVX2 arithmetic that
separates the two in numpy, so it runs the same on VNNI and AVX2-only machines.
"""

import copy
import json
import warnings
from dataclasses import asdict

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, numpy_helper
from torch import nn
from torch.nn.utils import parametrize
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.evaluators.onnx_eval import onnx_accuracy
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.evaluators.training import TrainSettings, model_accuracy, train_distilled
from edgeshrink.hardware_profiles import load_profile
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.quantization.fake_quant import (
    ActivationFakeQuant,
    finish_qat,
    onnx_scope,
    prepare_qat,
    qat_bits,
)
from edgeshrink.spaces.quantization.fp16 import HELPER_OPS
from edgeshrink.spaces.quantization.onnx_qdq import quantize, quantize_with_plan
from edgeshrink.spaces.quantization.plan import QuantPlan, plan_for

QDQ = {"QuantizeLinear", "DequantizeLinear"}


class Block(nn.Module):
    """A MobileNetV2 block laid out as edgeshrink's students are: its layers in one ``conv``."""

    def __init__(self, cin: int, cout: int, stride: int, act=nn.ReLU6, se: bool = False):
        super().__init__()
        mid = cin * 2
        layers = [Conv2dNormActivation(cin, mid, 1, activation_layer=act),
                  Conv2dNormActivation(mid, mid, 3, stride, groups=mid, activation_layer=act)]
        if se:
            layers.append(SqueezeExcitation(mid, 8, scale_activation=nn.Hardsigmoid))
        layers.append(Conv2dNormActivation(mid, cout, 1, activation_layer=None))
        self.conv = nn.Sequential(*layers)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.has_skip else self.conv(x)


class TinyStudent(nn.Module):
    """stem -> blocks -> head -> pool -> classifier, the module names of ``Student``."""

    def __init__(self):
        super().__init__()
        self.stem = Conv2dNormActivation(1, 8, 3, activation_layer=nn.ReLU6)
        self.blocks = nn.Sequential(Block(8, 16, 2), Block(16, 16, 1, nn.Hardswish, se=True),
                                    Block(16, 24, 2))
        self.head = Conv2dNormActivation(24, 64, 1, activation_layer=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two threads on a shared 2-core machine spin against other processes: 40x slower here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    data = load_digits_splits(16)
    torch.manual_seed(0)
    model = TinyStudent()
    train_distilled(model, data.train.x, data.train.y, None, epochs=10, settings=TrainSettings())
    path = tmp_path_factory.mktemp("quant") / "fp32.onnx"
    export_onnx(model, path, 1, 16)
    return model, data, path, _accuracy(path, data)


def _accuracy(path, data, method: str = "reference") -> float:
    """Reference arithmetic by default: the same figure on every CPU."""
    return onnx_accuracy(path, data.test.x.numpy(), data.test.y.numpy(), method=method)


def _logits(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _calibration(data) -> np.ndarray:
    return data.train.x[:128].numpy()


def _quantized(trained, tmp_path, plan, name="q.onnx"):
    _, data, fp32, _ = trained
    report = quantize_with_plan(fp32, tmp_path / name, _calibration(data), plan)
    return tmp_path / name, onnx.load(str(tmp_path / name)), report


def _weight_dq(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Layer node name -> the DequantizeLinear that feeds it its weight."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return {n.name: producer[n.input[1]] for n in model.graph.node
            if n.op_type in ("Conv", "Gemm") and producer.get(n.input[1]) is not None
            and producer[n.input[1]].op_type == "DequantizeLinear"}


@pytest.mark.slow
def test_int8_per_channel_stays_within_a_point_of_fp32(trained, tmp_path):
    _, data, _, fp32_acc = trained
    path, model, report = _quantized(trained, tmp_path, QuantPlan("int8"))
    acc = _accuracy(path, data)
    reduced, _, reduced_report = _quantized(trained, tmp_path,
                                            QuantPlan("int8", reduce_range=True), "r.onnx")
    on_host = _accuracy(reduced, data, "host")
    print(f"\nfp32 {fp32_acc:.4f}  int8 {acc:.4f} (reference)  7-bit weights {on_host:.4f} "
          f"(this CPU's kernels) {_accuracy(reduced, data):.4f} (reference)")
    assert acc >= fp32_acc - 0.01
    assert on_host >= fp32_acc - 0.01
    assert not report.reduce_range and reduced_report.reduce_range
    inits = {t.name: t for t in model.graph.initializer}
    dqs = _weight_dq(model)
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(dqs) == len(layers) == 14  # every conv (SE's too) and the classifier
    for name, dq in dqs.items():
        q, scale = inits[dq.input[0]], numpy_helper.to_array(inits[dq.input[1]])
        assert q.data_type == TensorProto.INT8 and scale.shape == (q.dims[0],), name
    assert report.realised == {"int8": "native"} and not report.simulated
    assert json.loads(json.dumps(asdict(report)))["nodes"]["int8"] == report.nodes["int8"]
    # The old whole-model entry point writes the same kind of file.
    quantize("int8", trained[2], tmp_path / "old.onnx", _calibration(data))
    assert _accuracy(tmp_path / "old.onnx", data) == acc


def _weight_grid(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Layer name -> (integer weights, per-channel scales) of every quantized layer."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {name: (inits[dq.input[0]], inits[dq.input[1]])
            for name, dq in _weight_dq(model).items()}


def test_reduce_range_stores_int8_weights_on_seven_bits(trained, tmp_path):
    full, _, _ = _quantized(trained, tmp_path, QuantPlan("int8"), "full.onnx")
    plan = plan_for(["int8", "int4", "int8"], "int8", reduce_range=True)
    reduced, _, report = _quantized(trained, tmp_path, plan, "reduced.onnx")
    full_grid, reduced_grid = _weight_grid(full), _weight_grid(reduced)
    assert max(int(np.abs(q).max()) for q, _ in full_grid.values()) == 127
    for name, (q, scale) in reduced_grid.items():
        bound = 7 if name.startswith("/blocks/blocks.1/") else 64  # int4 keeps its own grid
        assert int(np.abs(q.astype(np.int32)).max()) == bound, name
        # Twice the step of the full range: max|w| / 64 instead of max|w| / 127.
        if bound == 64:
            np.testing.assert_allclose(scale * 64, full_grid[name][1] * 127, rtol=1e-6)
    assert report.reduce_range


def _avx2_pair_sums(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """What ``vpmaddubsw`` computes: u8 activations x s8 weights, adjacent products along the
    reduction axis added in pairs; the true int32 pair sums, which int16 lanes clamp."""
    a, w = a.astype(np.int32), w.astype(np.int32)
    if a.shape[1] % 2:
        a, w = np.pad(a, ((0, 0), (0, 1))), np.pad(w, ((0, 0), (0, 1)))
    return (a[:, 0::2, None] * w.T[None, 0::2] + a[:, 1::2, None] * w.T[None, 1::2])


def _pointwise_inputs(path, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(u8 activations [pixels, cin], s8 weights [cout, cin]) of every 1x1 int8 conv: 2 per
    block, the SE block's two and the head."""
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        dq = producer.get(node.input[0])
        if (node.op_type == "Conv" and dq is not None and dq.op_type == "DequantizeLinear"
                and node.name in _weight_dq(model)
                and inits[_weight_dq(model)[node.name].input[0]].shape[2:] == (1, 1)):
            layers.append((dq.input[0], inits[_weight_dq(model)[node.name].input[0]]))
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name, _ in layers)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    outs = session.run([name for name, _ in layers], {"input": x})
    return [(np.moveaxis(a, 1, -1).reshape(-1, a.shape[1]), w[:, :, 0, 0])
            for a, (_, w) in zip(outs, layers, strict=True)]


def test_full_range_weights_saturate_avx2_pair_sums(trained, tmp_path):
    """Why 7 bits: on the real network, full-range weights overflow int16 pair sums on AVX2
    without VNNI; 7-bit weights cannot (2 x 255 x 64 = 32,640). Numpy, so any CPU runs it."""
    _, data, _, _ = trained
    x = data.test.x[:32].numpy()
    counts = {}
    for name, reduce in (("full", False), ("reduced", True)):
        path, _, _ = _quantized(trained, tmp_path, QuantPlan("int8", reduce_range=reduce),
                                f"{name}.onnx")
        layers = _pointwise_inputs(path, x)
        assert len(layers) == 9 and all(a.dtype == np.uint8 for a, _ in layers)
        sums = [_avx2_pair_sums(a, w) for a, w in layers]
        counts[name] = sum(int((np.abs(s) > 32767).sum()) for s in sums)
        peak = max(int(np.abs(s).max()) for s in sums)
        print(f"\n{name}: {counts[name]} saturating pair sums, largest |sum| {peak}")
    assert counts["full"] > 0
    assert counts["reduced"] == 0

def test_int4_weights_take_at_most_16_values_per_channel(trained, tmp_path):
    _, data, _, fp32_acc = trained
    path, model, report = _quantized(trained, tmp_path, QuantPlan("int4"))
    inits = {t.name: t for t in model.graph.initializer}
    dqs = _weight_dq(model)
    assert len(dqs) == 14
    for name, dq in dqs.items():
        t = inits[dq.input[0]]
        assert t.data_type == TensorProto.INT4, name  # true 4-bit storage
        q = numpy_helper.to_array(t).astype(np.int8)
        q = q.reshape(q.shape[0], -1) if "Conv" in name else q  # Gemm: [out, in] already
        assert np.abs(q).max() <= 7  # symmetric grid: scale = max|w| / 7
        assert max(len(np.unique(row)) for row in q) <= 16
    assert model.opset_import[0].version == 21
    assert report.realised == {"int4": "simulated"} and report.simulated
    layers = analyse_graph(model)
    assert {la.precision for la in layers if la.weight_elements} == {"int4"}
    print(f"\nfp32 {fp32_acc:.4f}  int4 PTQ {_accuracy(path, data):.4f}")


def test_mixed_plan_quantizes_only_the_planned_blocks(trained, tmp_path):
    _, data, _, fp32_acc = trained
    plan = plan_for(["int8", "fp32", "fp16"], "int8")
    path, model, report = _quantized(trained, tmp_path, plan)
    nodes = model.graph.node
    inits = {t.name: t for t in model.graph.initializer}
    dqs = _weight_dq(model)

    def under(prefix):
        return [n for n in nodes if n.name.startswith(prefix)]

    int8_block, fp32_block, fp16_block = (f"/blocks/blocks.{k}/" for k in range(3))
    assert {n.op_type for n in under(int8_block)} >= QDQ
    assert all(n.name in dqs for n in under(int8_block) if n.op_type == "Conv")
    for block in (fp32_block, fp16_block):
        assert not [n.name for n in under(block) if n.op_type in QDQ], block
        assert not [n for n in under(block) if n.name in dqs]
    fp32_convs = [n for n in under(fp32_block) if n.op_type == "Conv"]
    assert fp32_convs and all(inits[n.input[1]].data_type == TensorProto.FLOAT
                              for n in fp32_convs)
    half = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16]
    fp16_convs = [n for n in under(fp16_block) if n.op_type == "Conv"]
    assert len(half) == 2 * len(fp16_convs) == 6  # weight and bias of each
    assert all(t.name.startswith(fp16_block) for t in half)
    # The latency model sees each block at its precision.
    by_block = {b: {la.precision for la in analyse_graph(model)
                    if la.name.startswith(b) and la.weight_elements}
                for b in (int8_block, fp32_block, fp16_block)}
    assert by_block == {int8_block: {"int8"}, fp32_block: {"fp32"}, fp16_block: {"fp16"}}
    assert report.realised == {"fp32": "native", "fp16": "simulated", "int8": "native"}
    assert report.nodes["fp32"] == len([n for n in under(fp32_block)
                                        if n.op_type not in HELPER_OPS])
    acc = _accuracy(path, data)
    print(f"\nfp32 {fp32_acc:.4f}  mixed int8/fp32/fp16 {acc:.4f}")
    assert acc >= fp32_acc - 0.01


@pytest.mark.parametrize("symmetric,zero_type", [(True, TensorProto.INT8),
                                                 (False, TensorProto.UINT8)])
def test_activation_symmetry_sets_the_zero_points(trained, tmp_path, symmetric, zero_type):
    _, data, _, fp32_acc = trained
    path, model, report = _quantized(trained, tmp_path, QuantPlan("int8", {}, symmetric))
    inits = {t.name: t for t in model.graph.initializer}
    zeros = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(zeros) > 10 and {z.data_type for z in zeros} == {zero_type}
    values = np.array([numpy_helper.to_array(z) for z in zeros])
    if symmetric:
        assert (values == 0).all()
    else:
        assert (values > 0).any()  # asymmetric ranges put zero off the bottom somewhere
    assert report.act_symmetric is symmetric
    acc = _accuracy(path, data)
    reduced, _, _ = _quantized(trained, tmp_path, QuantPlan("int8", {}, symmetric, True), "r.onnx")
    on_host = _accuracy(reduced, data, "host")
    print(f"\nfp32 {fp32_acc:.4f}  int8 {'symmetric' if symmetric else 'uint8'} acts {acc:.4f} "
          f"(reference), 7-bit weights {on_host:.4f} (this CPU's kernels)")
    assert acc >= fp32_acc - 0.015
    assert on_host >= fp32_acc - 0.015


def test_fp16_is_simulated_with_fp16_weights_and_rounded_activations(trained, tmp_path):
    model_t, data, fp32, fp32_acc = trained
    path, model, report = _quantized(trained, tmp_path, QuantPlan("fp16"))
    float_inits = {t.name: numpy_helper.to_array(t)
                   for t in onnx.load(str(fp32)).graph.initializer}
    half = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.data_type == TensorProto.FLOAT16}
    assert len(half) == 2 * 14  # weight and bias of every conv and of the classifier
    exact = numpy_helper.to_array(next(t for t in model.graph.initializer
                                       if t.name == "/classifier/Gemm.weight.fp16"))
    np.testing.assert_array_equal(exact, float_inits["classifier.weight"].astype(np.float16))
    x = data.test.x.numpy()
    ref, out = _logits(fp32, x), _logits(path, x)
    gap = np.abs(out - ref).max() / np.abs(ref).max()
    assert 0 < gap < 1e-2  # rounded (so the Casts are not optimised away), but only by fp16
    acc = _accuracy(path, data)
    print(f"\nfp32 {fp32_acc:.4f}  fp16 {acc:.4f}  max logit gap {gap:.2e}")
    assert abs(acc - fp32_acc) <= 0.005
    assert report.realised == {"fp16": "simulated"}
    # The latency model: every layer at fp16, the Casts free, fp16 weight bytes.
    fp16_layers, fp32_layers = analyse_graph(model), analyse_graph(fp32)
    assert {la.precision for la in fp16_layers} == {"fp16"}
    assert [la.op_type for la in fp16_layers] == [la.op_type for la in fp32_layers]
    phone = load_profile("phone-cortex-a76")
    assert predict_latency(path, phone).weight_bytes * 2 == predict_latency(
        fp32, phone).weight_bytes


def test_batchnorm_folding_keeps_outputs_and_leaves_no_batchnorm(trained, tmp_path):
    model = trained[0]
    folded = fold_batchnorm(model)
    x = trained[1].test.x[:64]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # a copy
    counts = []
    for m in (model, folded):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # No constant folding: the exporter would otherwise fold BN itself.
            torch.onnx.export(m, (x[:1],), str(tmp_path / "m.onnx"), dynamo=False,
                              do_constant_folding=False)
        counts.append(sum(n.op_type == "BatchNormalization"
                          for n in onnx.load(str(tmp_path / "m.onnx")).graph.node))
    assert counts == [11, 0]


def test_module_scopes_match_the_exported_node_names(trained):
    model, _, fp32, _ = trained
    names = {n.name for n in onnx.load(str(fp32)).graph.node}
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert len(layers) == 14  # 13 convs (2 in the SE block) and the classifier
    for name, module in layers.items():
        op = "Conv" if isinstance(module, nn.Conv2d) else "Gemm"
        assert onnx_scope(model, name) + op in names, name
    bits = qat_bits(model, plan_for(["int8", "fp32", "int4"], "int8"))
    assert [bits("stem.0"), bits("blocks.0.conv.0.0"), bits("blocks.1.conv.2.fc1"),
            bits("blocks.2.conv.1.0"), bits("classifier")] == [8, 8, None, 4, 8]
    bits = qat_bits(model, plan_for(["int8", "fp32", "int4"], "int8", reduce_range=True))
    assert [bits("stem.0"), bits("blocks.1.conv.2.fc1"), bits("blocks.2.conv.1.0")] == [
        7, None, 4]


@pytest.mark.slow
def test_qat_at_int4_beats_or_matches_ptq_on_the_onnxruntime_grid(trained, tmp_path):
    model, data, fp32, fp32_acc = trained
    calib = _calibration(data)
    plan = QuantPlan("int4")
    quantize_with_plan(fp32, tmp_path / "ptq4.onnx", calib, plan)
    before = [p.detach().clone() for p in model.parameters()]
    qat = prepare_qat(model, qat_bits(model, plan))
    train_distilled(qat, data.train.x, data.train.y, None, epochs=2, settings=TrainSettings(),
                    lr=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    finished = finish_qat(qat)
    assert not any(isinstance(m, ActivationFakeQuant) or parametrize.is_parametrized(m)
                   for m in finished.modules())
    export_onnx(finished, tmp_path / "qat.onnx", 1, 16)
    quantize_with_plan(tmp_path / "qat.onnx", tmp_path / "qat4.onnx", calib, plan)
    quantize_with_plan(tmp_path / "qat.onnx", tmp_path / "qat8.onnx", calib, QuantPlan("int8"))
    ptq4, qat4, qat8 = (_accuracy(tmp_path / f, data) for f in ("ptq4.onnx", "qat4.onnx",
                                                               "qat8.onnx"))
    qat_float = model_accuracy(finished, data.test.x, data.test.y)
    print(f"\nfp32 {fp32_acc:.4f}  int4 PTQ {ptq4:.4f}  int4 QAT {qat4:.4f}  "
          f"int8 after QAT {qat8:.4f}  QAT float {qat_float:.4f}")
    assert qat4 >= ptq4
    assert qat8 >= fp32_acc - 0.015
    # The trained weights are exactly the ones onnxruntime stores at 4 bits.
    q = onnx.load(str(tmp_path / "qat4.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    dqs = _weight_dq(q)
    for name, module in finished.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            op = "Conv" if isinstance(module, nn.Conv2d) else "Gemm"
            dq = dqs[onnx_scope(finished, name) + op]
            scale = inits[dq.input[1]].reshape(-1, *[1] * (module.weight.dim() - 1))
            stored = inits[dq.input[0]].astype(np.float32) * scale
            np.testing.assert_allclose(stored, module.weight.detach().numpy(), rtol=1e-6,
                                       atol=1e-7, err_msg=name)


def test_qat_grid_at_reduced_range_is_the_one_onnxruntime_stores(trained, tmp_path):
    model, data, _, _ = trained
    plan = QuantPlan("int8", reduce_range=True)
    baked = finish_qat(prepare_qat(model, qat_bits(model, plan)))
    export_onnx(baked, tmp_path / "baked.onnx", 1, 16)
    quantize_with_plan(tmp_path / "baked.onnx", tmp_path / "q7.onnx", _calibration(data), plan)
    grid = _weight_grid(tmp_path / "q7.onnx")
    for name, module in baked.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            q, scale = grid[onnx_scope(baked, name) + ("Conv" if isinstance(module, nn.Conv2d)
                                                        else "Gemm")]
            stored = q.astype(np.float32) * scale.reshape(-1, *[1] * (q.ndim - 1))
            np.testing.assert_allclose(stored, module.weight.detach().numpy(), rtol=1e-6,
                                       atol=1e-7, err_msg=name)
            assert int(np.abs(q.astype(np.int32)).max()) == 64, name


def test_plan_names_a_bad_precision():
    with pytest.raises(EdgeshrinkError, match="precision of block 1.*'int3'"):
        plan_for(["int8", "int3"], "int8")
    with pytest.raises(EdgeshrinkError, match="'default'.*'bf16'"):
        QuantPlan("bf16")
    plan = plan_for(["int8", "int4", "int8"], "int8")
    assert plan.prefixes == {"/blocks/blocks.1/": "int4"}
    assert plan.precision_of("/blocks/blocks.1/conv/conv.0/conv.0.0/Conv") == "int4"
    assert plan.precision_of("/blocks/blocks.10/Add") == "int8"
    assert plan.precision_of("/classifier/Gemm") == "int8"


def test_microcontroller_stores_int4_in_half_the_bytes_of_int8(trained, tmp_path):
    _, data, fp32, _ = trained
    mcu = load_profile("stm32h7")
    assert "int4" in mcu.precisions
    files = {}
    for precision in ("int8", "int4"):
        files[precision] = tmp_path / f"{precision}.onnx"
        quantize(precision, fp32, files[precision], _calibration(data))
    int8, int4 = (predict_latency(files[p], mcu) for p in ("int8", "int4"))
    assert int4.weight_bytes * 2 == int8.weight_bytes
    assert int4.total_ms <= int8.total_ms


@pytest.mark.parametrize("symmetric", [False, True])
def test_activation_fake_quant_uses_onnxruntime_scale_and_zero_point(symmetric):
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    x = torch.linspace(-1.0, 3.0, 1001)
    fq = ActivationFakeQuant(symmetric).train()
    fq(x)  # the first batch sets the range
    y = fq.eval()(x).numpy()
    qtype = TensorProto.INT8 if symmetric else TensorProto.UINT8
    qmin, qmax = get_qmin_qmax_for_qType(qtype, symmetric=symmetric)
    zero, scale = compute_scale_zp(np.float32(-1.0), np.float32(3.0), qmin, qmax, symmetric)
    q = np.clip(np.round(x.numpy() / scale) + int(zero), int(qmin), int(qmax))
    np.testing.assert_allclose(y, (q - int(zero)) * scale, atol=1e-6)
    assert len(np.unique(y)) <= int(qmax) - int(qmin) + 1 and 0.0 in y


def test_prepared_model_copies_quantize_with_their_own_observers():
    torch.manual_seed(0)
    qat = prepare_qat(TinyStudent(), lambda name: 8)
    x = torch.randn(4, 1, 16, 16)
    qat.train()(x)
    high = float(qat.stem[0].input_quant.high)
    assert high == pytest.approx(float(x.max()))
    clone = copy.deepcopy(qat)
    clone(10 * x)  # EMA, momentum 0.1: the range moves a tenth of the way to 10x
    assert float(clone.stem[0].input_quant.high) == pytest.approx(high + 0.1 * 9 * high)
    assert float(qat.stem[0].input_quant.high) == high
    plain = finish_qat(clone)
    assert not plain.stem[0]._forward_pre_hooks and "input_quant" not in plain.stem[0]._modules
    with torch.no_grad():
        assert torch.isfinite(plain(x)).all()


def test_pruned_zeros_survive_folding_and_qat():
    from torch.nn.utils import prune

    torch.manual_seed(0)
    model = TinyStudent()
    x, y = torch.randn(32, 1, 16, 16), torch.randint(0, 10, (32,))
    model.train()(x)  # BN running statistics that are not the identity
    conv = model.blocks[0].conv[0][0]
    prune.l1_unstructured(conv, "weight", amount=0.5)
    pruned = conv.weight.detach() == 0
    assert pruned.float().mean() == 0.5
    folded = fold_batchnorm(model)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), atol=1e-5, rtol=1e-5)
    assert torch.equal(folded.blocks[0].conv[0][0].weight == 0, pruned)
    qat = prepare_qat(model, lambda name: 4)
    opt = torch.optim.SGD(qat.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(qat.train()(x), y).backward()
        opt.step()
    w = finish_qat(qat).blocks[0].conv[0][0].weight.detach()
    assert torch.equal(w == 0, pruned)  # trained, yet exactly the pruned weights are zero
    assert len(torch.unique(w[0])) <= 16
