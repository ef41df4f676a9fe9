"""The trial pipeline realises every compression choice in the file it measures."""

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeshrink.evaluators.onnx_eval import onnx_predict
from edgeshrink.evaluators.pipeline import evaluate_candidate
from edgeshrink.evaluators.teacher.builtin import load_or_train_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.cpu import host_cpu
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.spaces.candidate import Candidate, parse_arch

ARCH = "w1:ir_k3_e4_se_hs_r1_s1_c16,ds_k5_r1_s2_c24,ir_k3_e6_r1_s2_c32"
SETTINGS = TrainSettings(epochs=1, finetune_epochs=1)


@pytest.fixture(scope="module")
def setup(digits16, teacher_dir):
    teacher = load_or_train_teacher(digits16, teacher_dir, seed=0)
    width, stages = parse_arch(ARCH)
    base = Candidate(width_mult=width, stages=stages, temperature=4.0, alpha=0.5, sparsity=0.0,
                     precision="fp32")
    return digits16, teacher, base


def _run(setup, tmp_path, profile="host", **change):
    data, teacher, base = setup
    cand = dataclasses.replace(base, **change)
    return evaluate_candidate(cand, data, teacher, load_profile(profile), tmp_path / "t",
                              SETTINGS, seed=0)


def _conv_out_channels(path):
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = node.input[1]
            if w not in inits:  # int8: behind a DequantizeLinear
                w = producer[w].input[0]
            out[node.name] = inits[w].shape[0]
    return out


@pytest.mark.slow
def test_channel_pruning_and_int8_show_in_the_measured_file(setup, tmp_path):
    dense = _run(setup, tmp_path / "a")
    pruned = _run(setup, tmp_path / "b", pruning="channel", sparsity=0.5, precision="int8")
    before, after = _conv_out_channels(dense.artifact), _conv_out_channels(pruned.artifact)
    assert set(before) == set(after)
    expand = "/blocks/blocks.0/conv/conv.0/conv.0.0/Conv"  # 16 * 4 = 64 expanded channels
    assert before[expand] == 64 and after[expand] == 32  # host's channel block is 16
    assert pruned.macs < 0.6 * dense.macs
    assert pruned.pruning["method"] == "channel" and pruned.pruning["channels"]
    assert pruned.quantization["realised"] == {"int8": "native"}
    assert pruned.latency_method == "measured"
    # Measured on this host: its own kernels score it, and the record names the CPU.
    assert pruned.accuracy_method == "host" and pruned.cpu == host_cpu().to_dict()
    assert pruned.size_bytes < dense.size_bytes / 3
    # Weights at one byte and fewer of them.
    assert pruned.dense_weight_bytes < dense.dense_weight_bytes / 6


@pytest.mark.slow
def test_semi_structured_sparsity_is_counted_in_sparse_bytes(setup, tmp_path):
    r = _run(setup, tmp_path, pruning="semi_2_4")
    assert r.pruning["semi_structured_layers"]
    assert r.sparse_weight_bytes < 0.8 * r.dense_weight_bytes
    assert r.weight_sparsity > 0.3


@pytest.mark.slow
def test_simulated_precisions_are_predicted_and_said_so(setup, tmp_path):
    r = _run(setup, tmp_path, profile="phone-cortex-a76", precision="fp16",
             stage_precisions=("int8", "fp16", "fp16"))
    assert r.quantization["realised"] == {"fp16": "simulated", "int8": "native"}
    assert r.latency_method == "predicted" and r.layer_latency_ms
    # The phone's int8 arithmetic, not this CPU's kernels, gives its accuracy.
    assert r.accuracy_method == "reference"
    preds = onnx_predict(r.artifact, setup[0].val.x.numpy(), method="reference")
    assert float(np.mean(preds == setup[0].val.y.numpy())) == r.accuracy
    ref = _run(setup, tmp_path / "ref")
    # fp16 halves the float weights; stage 0 at int8 quarters its own.
    assert r.dense_weight_bytes < 0.55 * ref.dense_weight_bytes


@pytest.mark.slow
def test_qat_and_hints_run_and_are_recorded(setup, tmp_path):
    r = _run(setup, tmp_path, precision="int8", qat=True, act_symmetric=True, hint_weight=0.5)
    assert r.hint_applied and r.stage_seconds["qat"] > 0
    assert r.quantization["act_symmetric"] is True
    model = onnx.load(r.artifact)
    zero_points = [numpy_helper.to_array(t) for t in model.graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and t.dims == []]
    assert zero_points and all(int(z) == 0 for z in zero_points)


@pytest.mark.slow
def test_artifact_tensor_names_are_compact_and_the_file_is_what_was_scored(setup, tmp_path):
    data, _, _ = setup
    r = _run(setup, tmp_path, precision="int8")
    model = onnx.load(r.artifact)
    assert all(len(t.name) <= 6 for t in model.graph.initializer)
    assert any(n.name.startswith("/blocks/blocks.0/") for n in model.graph.node)
    preds = onnx_predict(r.artifact, data.val.x.numpy(), method=r.accuracy_method)
    assert float(np.mean(preds == data.val.y.numpy())) == r.accuracy


@pytest.mark.slow
def test_reduce_range_candidates_ship_seven_bit_weights(setup, tmp_path):
    r = _run(setup, tmp_path, precision="int8", reduce_range=True)
    assert r.quantization["reduce_range"] is True
    model = onnx.load(r.artifact)
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == 64
