"""Pruning methods: real channel removal, 2:4 patterns, magnitude targets, the iterative
schedule, and weight-size accounting of exported files."""

import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from torch import nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.size_accounting import weight_sizes
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.graph_stats import graph_stats
from edgeshrink.spaces.pruning.methods import (
    PRUNING_METHODS,
    PruneContext,
    global_magnitude,
    make_permanent,
    prune_model,
    weight_sparsity,
)

CLASSES = 10


class Block(nn.Module):
    """Mirrors spaces.blocks: layers in one ``conv`` Sequential, residual when shapes match."""

    def __init__(self, layers: list[nn.Module], skip: bool):
        super().__init__()
        self.conv = nn.Sequential(*layers)
        self.has_skip = skip

    def forward(self, x):
        return x + self.conv(x) if self.has_skip else self.conv(x)


def inverted_residual(cin, cout, stride, expansion=4, se=False, act=nn.ReLU6):
    mid = cin * expansion
    layers = [Conv2dNormActivation(cin, mid, 1, activation_layer=act),
              Conv2dNormActivation(mid, mid, 3, stride, groups=mid, activation_layer=act)]
    if se:
        layers.append(SqueezeExcitation(mid, mid // 4, scale_activation=nn.Hardsigmoid))
    layers.append(Conv2dNormActivation(mid, cout, 1, activation_layer=None))
    return Block(layers, stride == 1 and cin == cout)


def depthwise_separable(cin, cout, stride, se=False, act=nn.ReLU6):
    layers = [Conv2dNormActivation(cin, cin, 3, stride, groups=cin, activation_layer=act)]
    if se:
        layers.append(SqueezeExcitation(cin, 8, scale_activation=nn.Hardsigmoid))
    layers.append(Conv2dNormActivation(cin, cout, 1, activation_layer=act))
    return Block(layers, stride == 1 and cin == cout)


class Student(nn.Module):
    def __init__(self, blocks: list[nn.Module], last: int):
        super().__init__()
        self.stem = Conv2dNormActivation(3, 16, 3, activation_layer=nn.ReLU6)
        self.blocks = nn.Sequential(*blocks)
        self.head = Conv2dNormActivation(last, 64, 1, activation_layer=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, CLASSES)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def ir_student():
    return Student([inverted_residual(16, 16, 1, se=True, act=nn.Hardswish),
                    inverted_residual(16, 24, 2)], 24)


def ds_student():
    return Student([depthwise_separable(16, 16, 1, se=True, act=nn.Hardswish),
                    depthwise_separable(16, 32, 2)], 32)


def export(model, path, channels=3, res=16):
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, channels, res, res),), str(path),
                          input_names=["input"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    return onnx.load(str(path))


def conv_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: inits[n.input[1]] for n in model.graph.node
            if n.op_type in ("Conv", "Gemm") and n.input[1] in inits}


@pytest.mark.parametrize("build", [ir_student, ds_student])
def test_channel_pruning_halves_the_exported_convs(build, tmp_path):
    torch.manual_seed(0)
    model = build()
    before = export(model, tmp_path / "before.onnx")
    x = torch.randn(1, 3, 16, 16)
    report = prune_model(model.train(), "channel", 0.5, "l1", PruneContext(x))
    after = export(model, tmp_path / "after.onnx")

    wb, wa = conv_weights(before), conv_weights(after)
    assert wb.keys() == wa.keys()
    for name, w in wb.items():
        if name.endswith("Gemm"):  # classifier: all classes kept, inputs halved with the head
            assert wa[name].shape == (CLASSES, w.shape[1] // 2)
            continue
        assert wa[name].shape[0] == w.shape[0] // 2, name
        if w.shape[1] > 1 and name != "/stem/stem.0/Conv":  # not depthwise, not the image
            assert wa[name].shape[1] == w.shape[1] // 2, name
    assert wa["/stem/stem.0/Conv"].shape[1] == 3  # input channels untouched
    assert report.achieved_sparsity == pytest.approx(0.5)
    assert report.channels["head.0"] == (64, 32)

    # Pointwise convs shrink in both directions: far fewer MACs, not just half.
    macs_before = graph_stats(tmp_path / "before.onnx").macs
    macs_after = graph_stats(tmp_path / "after.onnx").macs
    assert macs_after < 0.4 * macs_before

    # The residual (block 0: 16 -> 16) is still an Add over tensors of equal, halved width.
    assert model.blocks[0].has_skip
    assert any(n.op_type == "Add" for n in after.graph.node)
    sess = ort.InferenceSession(str(tmp_path / "after.onnx"))
    xs = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    out = sess.run(None, {"input": xs})[0]
    assert out.shape == (2, CLASSES)
    np.testing.assert_allclose(out, model(torch.from_numpy(xs)).detach().numpy(), atol=1e-4)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1, bias=False)
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(F.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize(("importance", "kept"), [("l1", {0, 1}), ("l2", {0, 2}),
                                                   ("taylor", {1, 3})])
def test_importances_rank_channels_as_computed_by_hand(importance, kept):
    model = TwoLayer()
    rows = torch.tensor([[3.0, 0.0], [1.0, 1.0], [1.6, 0.0], [0.5, 0.5]])
    # l1: 3, 2, 1.6, 1 -> keep 0, 1.   l2 (sum of squares): 9, 2, 2.56, 0.5 -> keep 0, 2.
    # taylor: input channel 0 is always 0, so channels 0 and 2 (which read only it) output 0
    # and every |w * dL/dw| of theirs is 0 -> keep 1, 3 although channel 0 is the largest.
    # The classifier's columns are equal for every channel, adding the same to each l1/l2 score.
    with torch.no_grad():
        model.conv.weight.copy_(rows[:, :, None, None])
        model.classifier.weight.copy_(torch.tensor([[0.5], [-0.3], [0.2]]).expand(3, 4))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 2, 2, 2, generator=g) + 0.5
    x[:, 0] = 0
    y = torch.randint(0, 3, (8,), generator=g)
    ctx = PruneContext(x, loss_fn=lambda m: F.cross_entropy(m(x), y), steps=1)
    report = prune_model(model, "channel", 0.5, importance, ctx)
    got = {int((rows == r[:, 0, 0]).all(1).nonzero()) for r in model.conv.weight}
    assert got == kept
    assert report.importance == importance and report.channels == {"conv": (4, 2)}
    assert model.classifier.weight.shape == (3, 2)


def test_taylor_without_a_loss_and_unknown_names_are_user_errors():
    x = torch.randn(1, 2, 2, 2)
    with pytest.raises(EdgeshrinkError, match="loss_fn"):
        prune_model(TwoLayer(), "channel", 0.5, "taylor", PruneContext(x))
    with pytest.raises(EdgeshrinkError, match="'magnitude' is unknown"):
        prune_model(TwoLayer(), "magnitude", 0.5, "l1", PruneContext(x))
    with pytest.raises(EdgeshrinkError, match="sparsity"):
        prune_model(TwoLayer(), "channel", 1.0, "l1", PruneContext(x))


def test_round_to_keeps_multiples_and_never_empties_a_conv():
    torch.manual_seed(0)
    model = ir_student()  # SE squeeze of block 0: 16 channels; block 1 output: 24
    ctx = PruneContext(torch.randn(1, 3, 16, 16), steps=1, round_to=8)
    prune_model(model, "channel", 0.8, "l2", ctx)
    outs = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    # floor(16 * 0.2) = 3 rounds down to 0: kept at 8 (torch_pruning alone would keep all 16);
    # floor(24 * 0.2) = 4 -> 8 as well; floor(64 * 0.2) = 12 -> 8.
    assert outs["stem.0"] == 8 and outs["blocks.0.conv.2.fc1"] == 8
    assert outs["blocks.1.conv.2.0"] == 8 and outs["blocks.1.conv.0.0"] == 8
    assert outs["head.0"] == 8
    assert all(c % 8 == 0 for c in outs.values())


def _groups_of_four(w: np.ndarray) -> np.ndarray:
    return w.reshape(w.shape[0], -1, 4)


def test_semi_2_4_pattern_in_every_group_survives_export(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        Conv2dNormActivation(3, 8, 3),  # 3*3*3 = 27 inputs per row: not a multiple of 4
        Conv2dNormActivation(8, 8, 3),  # dense 3x3: 72 inputs per row
        Conv2dNormActivation(8, 8, 3, groups=8),  # depthwise: left dense
        Conv2dNormActivation(8, 16, 1),  # pointwise
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, CLASSES),
    )
    report = prune_model(model, "semi_2_4", 0.9, "l1", PruneContext(torch.randn(1, 3, 8, 8)))
    assert report.semi_structured_layers == ["1.0", "3.0", "6"]
    assert report.dense_layers == ["0.0", "2.0"]
    eligible = 8 * 72 + 16 * 8 + CLASSES * 16
    total = eligible + 8 * 27 + 8 * 9
    assert report.target_sparsity == pytest.approx(0.5 * eligible / total)
    assert report.achieved_sparsity == pytest.approx(report.target_sparsity)
    for name in report.semi_structured_layers:
        w = dict(model.named_modules())[name].weight.detach().numpy()
        assert ((_groups_of_four(w) == 0).sum(-1) == 2).all(), name
    for name in report.dense_layers:
        assert (dict(model.named_modules())[name].weight != 0).all(), name

    onnx_model = export(model, tmp_path / "m.onnx", res=8)  # BatchNorm folds into the convs
    weights = conv_weights(onnx_model)
    patterned = [n for n, w in weights.items() if w[0].size % 4 == 0 and w.shape[1] > 1]
    assert len(patterned) == 3
    for name in patterned:
        assert ((_groups_of_four(weights[name]) == 0).sum(-1) == 2).all(), name
    # The latency model sees the pattern (profiles with 2:4 kernels halve those layers).
    assert {lay.name for lay in analyse_graph(onnx_model) if lay.is_2to4} == set(patterned)


def _scaled_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, CLASSES))
    with torch.no_grad():
        model[2].weight.mul_(0.1)  # a layer of small weights
    return model


def test_layer_magnitude_hits_the_target_in_every_layer():
    model = _scaled_model()
    original = [m.weight.detach().clone() for m in model if hasattr(m, "weight")]
    report = prune_model(model, "layer_magnitude", 0.6, "l1",
                         PruneContext(torch.randn(1, 3, 8, 8), steps=3))
    for w0, m in zip(original, [m for m in model if hasattr(m, "weight")], strict=True):
        zeros = int((m.weight == 0).sum())
        assert abs(zeros - 0.6 * m.weight.numel()) <= 1
        # Magnitude order within the layer: every pruned |w| <= every kept |w|.
        assert w0[m.weight == 0].abs().max() <= w0[m.weight != 0].abs().min()
    assert report.achieved_sparsity == pytest.approx(0.6, abs=1e-3)


def test_global_magnitude_hits_the_global_target_with_one_threshold():
    model = _scaled_model()
    original = torch.cat([m.weight.detach().flatten() for m in model if hasattr(m, "weight")])
    total = original.numel()
    report = prune_model(model, "global_magnitude", 0.6, "l1",
                         PruneContext(torch.randn(1, 3, 8, 8), steps=3))
    pruned = torch.cat([m.weight.detach().flatten() for m in model if hasattr(m, "weight")])
    assert int((pruned == 0).sum()) == round(0.6 * total)
    assert original[pruned == 0].abs().max() <= original[pruned != 0].abs().min()
    # One threshold: the small-weight layer loses far more than 60 %, unlike layer_magnitude.
    assert (model[2].weight == 0).float().mean() > 0.95
    assert report.achieved_sparsity == pytest.approx(0.6, abs=1e-4)
    # The schema-1 call still prunes in one step, masks attached.
    legacy = _scaled_model()
    PRUNING_METHODS["global_magnitude"](legacy, 0.6)
    assert hasattr(legacy[0], "weight_mask")
    make_permanent(legacy)
    assert weight_sparsity(legacy) == pytest.approx(0.6, abs=1e-4)


@pytest.mark.parametrize("method", ["global_magnitude", "semi_2_4"])
def test_schedule_finetunes_after_each_step_with_masks_held(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    layers = [model[0], model[3]]
    x, y = torch.randn(16, 4, 4, 4), torch.randint(0, 4, (16,))
    seen: list[float] = []
    zero_sets: list[torch.Tensor] = []

    def finetune(m: nn.Module) -> None:
        opt = torch.optim.SGD(m.parameters(), lr=1.0, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        m(x)  # the forward recomputes weight = weight_orig * mask
        for layer in layers:  # exactly the masked weights are zero, after optimizer steps
            assert torch.equal(layer.weight == 0, layer.weight_mask == 0)
        zero_sets.append(torch.cat([(layer.weight == 0).flatten() for layer in layers]))
        seen.append(weight_sparsity(m))

    prune_model(model, method, 0.6, "l1", PruneContext(x[:1], finetune=finetune, steps=2))
    if method == "global_magnitude":
        assert seen == pytest.approx([0.3, 0.6], abs=1e-3)
    else:  # 1, then 2 zeros of every 4 in both (eligible) layers
        assert seen == pytest.approx([0.25, 0.5])
    assert not zero_sets[0][~zero_sets[1]].any()  # masks only grow
    assert not any(hasattr(layer, "weight_mask") for layer in layers)  # permanent at the end
    final = torch.cat([(layer.weight == 0).flatten() for layer in layers])
    assert torch.equal(final, zero_sets[1])


def test_channel_schedule_shrinks_gradually_and_finetunes_each_step():
    torch.manual_seed(0)
    model = ir_student()
    x = torch.randn(4, 3, 16, 16)
    widths: list[int] = []

    def finetune(m: nn.Module) -> None:
        opt = torch.optim.SGD(m.parameters(), lr=0.01)  # parameters change shape: rebuilt
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
        widths.append(m.head[0].out_channels)

    prune_model(model, "channel", 0.5, "taylor",
                PruneContext(x[:1], loss_fn=lambda m: m(x).square().mean(), finetune=finetune))
    assert widths == [48, 32]


def _weights_8x8():
    """Three 8->8 1x1 convs: 2:4 (32 non-zeros), unstructured (16), dense; values +-1, +-2."""
    rng = np.random.default_rng(0)
    vals = rng.choice([-2.0, -1.0, 1.0, 2.0], size=(3, 8, 8)).astype(np.float32)
    vals[:, :, 0] = 2.0  # every row's max is 2: int8 quantization keeps all non-zeros
    two_four = np.zeros((8, 8), np.float32)
    two_four[:, [0, 3, 4, 6]] = vals[0][:, [0, 3, 4, 6]]  # 2 zeros in each group of 4
    unstructured = np.zeros((8, 8), np.float32)
    unstructured[:2] = vals[1][:2]  # rows 0, 1 full: not 2:4
    return [two_four, unstructured, vals[2]]


def test_size_accounting_hand_checked_fp32_and_int8(tmp_path):
    model = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.ReLU(),
                          nn.Conv2d(8, 8, 1, bias=False), nn.ReLU(),
                          nn.Conv2d(8, 8, 1, bias=False))
    with torch.no_grad():
        for conv, w in zip(model[::2], _weights_8x8(), strict=True):
            conv.weight.copy_(torch.from_numpy(w)[:, :, None, None])
    fp32 = tmp_path / "fp32.onnx"
    export(model, fp32, channels=8, res=4)

    sizes = weight_sizes(fp32)
    by_pattern = {t.pattern: t for t in sizes.tensors}
    # 64 weights of 4 B = 256 B dense. 2:4: 32 values * 4 B + 32 * 2 bits = 136 B.
    # Unstructured: 16 values * 4 B + 64-bit mask = 72 B. Dense: bitmask would be 264 B > 256.
    assert (by_pattern["2:4"].format, by_pattern["2:4"].sparse_bytes) == ("2:4", 136)
    assert (by_pattern["unstructured"].format, by_pattern["unstructured"].sparse_bytes) == (
        "bitmask", 72)
    assert (by_pattern["dense"].format, by_pattern["dense"].sparse_bytes) == ("dense", 256)
    assert (sizes.dense_bytes, sizes.sparse_bytes, sizes.quant_param_bytes) == (768, 464, 0)

    class Reader:
        def __init__(self):
            self._it = iter(np.random.default_rng(1).standard_normal((4, 1, 8, 4, 4))
                            .astype(np.float32))

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {"input": batch}

    int8 = tmp_path / "int8.onnx"
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    q = weight_sizes(int8)
    assert [t.bits for t in q.tensors] == [8, 8, 8]
    assert sorted(t.nonzeros for t in q.tensors) == [16, 32, 64]  # zeros stay zeros
    by_pattern = {t.pattern: t for t in q.tensors}
    # 64 B dense each. 2:4: 32 * (8 + 2) bits = 40 B. Unstructured: 16 B + 8 B mask = 24 B.
    assert by_pattern["2:4"].sparse_bytes == 40
    assert by_pattern["unstructured"].sparse_bytes == 24
    assert by_pattern["dense"].sparse_bytes == 64
    assert (q.dense_bytes, q.sparse_bytes) == (192, 128)
    # Per output channel: a float32 scale and an int8 zero point, 8 channels, 3 tensors.
    assert q.quant_param_bytes == 3 * 8 * (4 + 1)
    assert math.isclose(q.sparse_bytes / q.dense_bytes, 2 / 3)


def test_size_accounting_reads_int4_weights_through_dequantize():
    two_four = _weights_8x8()[0].astype(np.int8)  # values in -2..2: fit int4
    w = onnx.helper.make_tensor("w", onnx.TensorProto.INT4, [8, 8, 1, 1], two_four.flatten())
    scale = onnx.numpy_helper.from_array(np.full(8, 0.1, np.float32), "s")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("DequantizeLinear", ["w", "s"], ["wf"], axis=0),
         onnx.helper.make_node("Conv", ["x", "wf"], ["y"], name="conv")],
        "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 4, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 4, 4])],
        initializer=[w, scale])
    sizes = weight_sizes(onnx.helper.make_model(graph))
    (t,) = sizes.tensors
    assert (t.bits, t.nonzeros, t.pattern, t.node) == (4, 32, "2:4", "conv")
    # 64 * 4 bits = 32 B dense; 2:4: 32 * (4 + 2) bits = 24 B; the 8 fp32 scales: 32 B.
    assert (sizes.dense_bytes, sizes.sparse_bytes, sizes.quant_param_bytes) == (32, 24, 32)


def test_pruned_student_weights_load_into_a_fresh_student():
    from edgeshrink.spaces.blocks import build_student
    from edgeshrink.spaces.candidate import Candidate
    from edgeshrink.spaces.pruning.methods import PruneContext, prune_model
    from edgeshrink.spaces.pruning.state import load_pruned_state_dict

    cand = Candidate.from_dict({
        "width_mult": 1.0, "temperature": 4.0, "alpha": 0.5, "sparsity": 0.5,
        "precision": "fp32", "pruning": "channel",
        "stages": ["ir_k3_e4_se_hs_r2_s1_c16", "ds_k5_r1_s2_c24", "ir_k5_e6_r1_s1_c24"]})
    torch.manual_seed(0)
    model = build_student(cand, 1, 10).eval()
    x = torch.randn(2, 1, 16, 16)
    prune_model(model, "channel", 0.5, "l1", PruneContext(example_input=x[:1]))
    state = model.state_dict()
    fresh = load_pruned_state_dict(build_student(cand, 1, 10), state).eval()
    assert fresh.blocks[0].conv[0][0].out_channels == model.blocks[0].conv[0][0].out_channels < 64
    torch.testing.assert_close(fresh(x), model(x))


def test_magnitude_pruning_hits_the_target_and_is_permanent():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Flatten(), nn.Linear(16 * 6 * 6, 10))
    global_magnitude(model, 0.6)
    make_permanent(model)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())
    assert weight_sparsity(model) == pytest.approx(0.6, abs=0.001)
    # Magnitude pruning: every surviving weight is at least as large as every pruned one.
    w = torch.cat([model[0].weight.flatten(), model[2].weight.flatten()])
    assert w[w != 0].abs().min() > 0
