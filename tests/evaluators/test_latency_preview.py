"""The latency preview: an untrained student's latency is the trained artifact's latency."""

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.latency_preview import preview_blocker, preview_latency
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.evaluators.pipeline import evaluate_candidate
from edgeshrink.evaluators.teacher.builtin import load_or_train_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.graph_stats import graph_stats
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.candidate import Candidate, parse_arch
from edgeshrink.spaces.pruning.methods import PruneContext, prune_model

# Inverted residual with SE and hard-swish, depthwise-separable, plain inverted residual.
ARCH = "w1:ir_k3_e4_se_hs_r1_s1_c16,ds_k5_r1_s2_c24,ir_k3_e6_r1_s2_c32"
SETTINGS = TrainSettings(epochs=1, finetune_epochs=1)  # prune_steps 2, as a search prunes


def _cand(**change) -> Candidate:
    width, stages = parse_arch(ARCH)
    base = Candidate(width_mult=width, stages=stages, temperature=4.0, alpha=0.5, sparsity=0.0,
                     precision="fp32")
    return dataclasses.replace(base, **change)


def _weight_shapes(path) -> dict[str, tuple[int, ...]]:
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: inits[n.input[1]].shape for n in model.graph.node
            if n.op_type in ("Conv", "Gemm")}


def _pruned_file(candidate, data, tmp_path, seed, steps, round_to, perturb=False):
    """Export a student built from ``seed`` and pruned; ``perturb`` replaces its weights with
    fresh noise after each pruning step, as training between the steps would change them."""
    torch.manual_seed(seed)
    model = build_student(candidate, data.in_channels, data.num_classes)
    x, y = data.train.x, data.train.y

    def noise(m):
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn_like(p))

    ctx = PruneContext(example_input=x[:1],
                       loss_fn=lambda m: torch.nn.functional.cross_entropy(m(x[:64]), y[:64]),
                       finetune=noise if perturb else None, steps=steps, round_to=round_to)
    prune_model(model, candidate.pruning, candidate.sparsity, candidate.importance, ctx)
    path = tmp_path / f"s{seed}_{steps}_{perturb}.onnx"
    export_onnx(fold_batchnorm(model), path, data.in_channels, data.resolution)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("pruning", "importance", "sparsity", "round_to"), [
    ("channel", "l1", 0.5, 1),
    ("channel", "l2", 0.3, 8),
    ("channel", "taylor", 0.6, 16),
    ("global_magnitude", "l1", 0.5, 1),
    ("layer_magnitude", "l1", 0.5, 1),
    ("semi_2_4", "l1", 0.0, 1),
])
def test_pruned_shapes_do_not_depend_on_the_weights(digits16, tmp_path, pruning, importance,
                                                    sparsity, round_to):
    cand = _cand(pruning=pruning, importance=importance, sparsity=sparsity)
    files = [_pruned_file(cand, digits16, tmp_path, seed=0, steps=1, round_to=round_to),
             _pruned_file(cand, digits16, tmp_path, seed=1, steps=1, round_to=round_to),
             # two steps with the weights changed in between: what a trial does
             _pruned_file(cand, digits16, tmp_path, seed=2, steps=2, round_to=round_to,
                          perturb=True)]
    shapes = [_weight_shapes(f) for f in files]
    macs = [graph_stats(f).macs for f in files]
    assert shapes[0] == shapes[1] == shapes[2]
    assert macs[0] == macs[1] == macs[2]
    dense = _weight_shapes(_pruned_file(_cand(), digits16, tmp_path, seed=0, steps=1,
                                        round_to=1))
    if pruning == "channel":  # really pruned: fewer output channels somewhere
        assert sum(s[0] for s in shapes[0].values()) < sum(s[0] for s in dense.values())
        if round_to > 1:  # every pruned conv keeps a multiple of the block (or its minimum)
            assert all(s[0] % round_to == 0 or s[0] < round_to
                       for n, s in shapes[0].items() if s[0] != dense[n][0])
    else:  # zeros only: the dense graph is unchanged
        assert shapes[0] == dense


def test_which_weights_are_zero_does_depend_on_them(digits16, tmp_path):
    """Why sparse-kernel profiles get no preview: a global threshold zeroes a different share
    of each layer for each set of weights, and such a profile times layers by that share."""
    cand = _cand(pruning="global_magnitude", sparsity=0.5)
    pi = load_profile("raspberry-pi-4")
    sparse_pi = dataclasses.replace(pi, sparsity_support="unstructured", min_sparsity=0.1)
    files = [_pruned_file(cand, digits16, tmp_path, seed=s, steps=1, round_to=1)
             for s in (0, 1)]
    assert predict_latency(files[0], pi).total_ms == predict_latency(files[1], pi).total_ms
    assert predict_latency(files[0], sparse_pi).total_ms != pytest.approx(
        predict_latency(files[1], sparse_pi).total_ms, rel=1e-9, abs=0)
    assert preview_blocker(cand, pi) is None
    why = preview_blocker(cand, sparse_pi)
    assert why is not None and "sparse kernels" in why
    with pytest.raises(EdgeshrinkError, match="no latency preview"):
        preview_latency(cand, digits16, sparse_pi, tmp_path, SETTINGS)


@pytest.fixture(scope="module")
def teacher(digits16, teacher_dir):
    return load_or_train_teacher(digits16, teacher_dir, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize(("block", "change"), [
    # Channel-pruned int8 on the Pi: the case the search's abort relies on.
    (None, dict(pruning="channel", sparsity=0.5, precision="int8")),
    # A channel block of 16 to round to, Taylor ranking, quantization-aware training, mixed
    # precision (the middle stage stays fp32).
    (16, dict(pruning="channel", importance="taylor", sparsity=0.4, precision="int8",
              stage_precisions=("int8", "fp32", "int8"), qat=True)),
])
def test_preview_is_the_trained_artifacts_latency(digits16, teacher, tmp_path, block, change):
    cand, method = _cand(**change), "predicted"
    prof = load_profile("raspberry-pi-4")
    if block is not None:
        prof = dataclasses.replace(prof, channel_block={"fp32": block, "int8": block})
    seen, epochs = [], []
    result = evaluate_candidate(cand, digits16, teacher, prof, tmp_path / "t", SETTINGS,
                                seed=0, on_preview=lambda ms, how: seen.append((ms, how)),
                                on_epoch=lambda e, _acc: epochs.append(e))
    assert result.latency_method == method and result.pruning["channels"]
    assert seen == [(result.preview_latency_ms, method)]
    assert result.preview_latency_ms == pytest.approx(result.latency_ms, rel=1e-12)
    assert "preview" in result.stage_seconds and epochs == [1]
    assert not list(tmp_path.glob("preview-*"))  # its scratch files are gone
    # The preview leaves the random state alone: the same trial without it trains the same.
    plain = evaluate_candidate(cand, digits16, teacher, prof, tmp_path / "u", SETTINGS, seed=0)
    assert plain.preview_latency_ms is None and "preview" not in plain.stage_seconds
    assert (plain.accuracy, plain.latency_ms) == (result.accuracy, result.latency_ms)
    a, b = (torch.load(tmp_path / d / "weights.pt") for d in ("t", "u"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_raising_preview_stops_the_trial_before_training(digits16, teacher, tmp_path):
    class Abort(Exception):
        pass

    def refuse(ms: float, how: str) -> None:
        raise Abort(f"{ms} {how}")

    epochs = []
    with pytest.raises(Abort):
        evaluate_candidate(_cand(precision="int8"), digits16, teacher,
                           load_profile("raspberry-pi-4"), tmp_path / "t", SETTINGS,
                           on_preview=refuse, on_epoch=lambda e, _a: epochs.append(e))
    assert epochs == [] and sorted(p.name for p in tmp_path.iterdir()) == []


def test_preview_is_deterministic_and_leaves_the_random_state_alone(digits16, tmp_path):
    cand = _cand(pruning="channel", sparsity=0.5, precision="int8")
    pi = load_profile("raspberry-pi-4")
    first = preview_latency(cand, digits16, pi, tmp_path, SETTINGS)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    second = preview_latency(cand, digits16, pi, tmp_path, SETTINGS)
    assert torch.equal(torch.rand(3), before)  # the caller's random stream is untouched
    assert first == second and first.method == "predicted"
    dense = preview_latency(_cand(precision="int8"), digits16, pi, tmp_path, SETTINGS)
    assert np.isfinite(dense.latency_ms) and first.latency_ms < dense.latency_ms
