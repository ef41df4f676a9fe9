"""Weight sharing: slicing, extraction, the supernet's forward, its cache, and what it buys."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.supernet import (
    SuperNet,
    SupernetSettings,
    fit_supernet,
    inherit_weights,
    prepare_inherited,
    train_supernet,
)
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.training import TrainSettings, model_accuracy, train_distilled
from edgeshrink.spaces.blocks import arch_of, build_student
from edgeshrink.spaces.candidate import Candidate, parse_arch
from edgeshrink.spaces.enumerate import sample_subnet
from edgeshrink.spaces.space import parse_space


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread is 25x faster than two on this shared CPU (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_space(block_type: tuple[str, ...] = ("ir", "ds"), skip_first: bool = False,
               activation: tuple[str, ...] = ("relu6", "hswish"), first_channels: int = 8):
    first = {"channels": first_channels, "stride": 1}
    if skip_first:
        first["block_type"] = ["skip", *block_type]
    return parse_space({
        "input_resolution": 16, "stem_channels": 8, "head_channels": 32,
        "stages": [first, {"channels": 16, "stride": 2}, {"channels": 16, "stride": 1}],
        "choices": {
            "block_type": list(block_type), "kernel": [3, 5], "expansion": [1, 3],
            "se": [False, True], "activation": list(activation),
            "depth": {"low": 1, "high": 2},
            "width_mult": {"low": 0.5, "high": 1.0, "step": 0.5},
            "temperature": {"low": 4.0, "high": 4.0}, "alpha": {"low": 0.5, "high": 0.5},
            "sparsity": {"low": 0.0, "high": 0.0}, "precision": ["fp32"],
        },
    })


def label_teacher(data) -> Teacher:
    """A stand-in teacher, the labels as confident logits: training one would dominate here."""
    logits = 5.0 * torch.nn.functional.one_hot(data.train.y, data.num_classes).float()
    return Teacher(torch.nn.Identity(), logits, 1.0, False, 0.0)


def candidate(arch: str) -> Candidate:
    width, stages = parse_arch(arch)
    return Candidate(width, stages, 4.0, 0.5, 0.0, "fp32", stem_channels=8, head_channels=32)


def test_extracted_weights_are_first_channels_and_kernel_centre():
    torch.manual_seed(0)
    net = SuperNet(tiny_space(), 1, 10)
    with torch.no_grad():  # BatchNorm statistics unlike their initial ones, so slicing shows
        for buffer in (b for b in net.buffers() if b.is_floating_point()):
            buffer.uniform_(0.5, 1.5)
    student = net.extract(candidate(
        "w0.5:ir_k3_e3_r1_s1_c8,ds_k3_r1_s2_c16,ir_k5_e1_se_r2_s1_c16"))
    big = net.stages[0][0]["ir"].conv  # expand(8->24), dw k5, se, project(24->8)
    small = student.blocks[0].conv  # expand(4->12), dw k3, project(12->4)
    assert torch.equal(small[0][0].weight, big[0][0].weight[:12, :4])
    assert torch.equal(small[1][0].weight, big[1][0].weight[:12, :, 1:4, 1:4])
    assert torch.equal(small[1][1].running_var, big[1][1].running_var[:12])
    assert torch.equal(small[2][0].weight, big[3][0].weight[:4, :12])  # past the absent SE
    ds_big, ds_small = net.stages[1][0]["ds"].conv, student.blocks[1].conv
    assert torch.equal(ds_small[0][0].weight, ds_big[0][0].weight[:4, :, 1:4, 1:4])
    assert torch.equal(ds_small[1][0].weight, ds_big[2][0].weight[:8, :4])
    # Expansion 1 has no expand layer: the depthwise conv takes the first 8 of 24 channels.
    ir_big, ir_small = net.stages[2][1]["ir"].conv, student.blocks[3].conv
    assert torch.equal(ir_small[0][0].weight, ir_big[1][0].weight[:8])
    assert torch.equal(ir_small[1].fc1.weight, ir_big[2].fc1.weight[:8, :8])
    assert torch.equal(student.head[0].weight, net.head[0].weight[:, :8])
    assert torch.equal(student.classifier.weight, net.classifier.weight)


@pytest.mark.parametrize("seed", range(6))
def test_extracted_student_has_the_candidates_architecture(seed):
    # A skippable first stage narrower than the stem: the next stage's first block takes either.
    space = tiny_space(skip_first=True, first_channels=4)
    net = SuperNet(space, 1, 10).eval()
    assert net.stages[1][0]["ir"].conv[0][0].in_channels == 8  # the stem's, not stage 0's 4
    rng = random.Random(seed)
    x = torch.randn(2, 1, 16, 16)
    for mode in ("largest", "smallest", "random"):
        c = sample_subnet(space, net.options, rng, mode)
        student = net.extract(c).eval()
        assert arch_of(student) == c.arch
        with torch.no_grad():
            assert torch.allclose(student(x), net(x, c), atol=1e-6)


def test_largest_and_smallest_of_the_reduced_space():
    from edgeshrink.spaces.space import load_space

    space = load_space("benchmarks/reduced_space.yaml")
    net = SuperNet(space, 1, 10)
    rng = random.Random(0)
    assert sample_subnet(space, net.options, rng, "largest").arch == (
        "w1:ir_k5_e6_r1_s1_c16,ir_k5_e6_r1_s2_c32")
    assert sample_subnet(space, net.options, rng, "smallest").arch == (
        "w0.5:ds_k3_r1_s1_c16,ds_k3_r1_s2_c32")


def test_largest_subnet_forward_equals_the_supernets_own_modules():
    """At the largest configuration the slices are whole tensors: the extracted student must
    compute exactly what the supernet's own blocks compute, run by hand here."""
    torch.manual_seed(0)
    space = tiny_space(block_type=("ir",), activation=("relu6",))
    net = SuperNet(space, 1, 10)
    fit_supernet(net, _random_data(), torch.randn(64, 10), SupernetSettings(epochs=1))
    net.eval()
    largest = sample_subnet(space, net.options, random.Random(0), "largest")
    assert largest.arch == ("w1:ir_k5_e3_se_r2_s1_c8,ir_k5_e3_se_r2_s2_c16,"
                            "ir_k5_e3_se_r2_s1_c16")
    x = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        h = net.stem(x)
        for stage in net.stages:
            for position in stage:
                h = position["ir"](h)
        pooled = torch.nn.functional.adaptive_avg_pool2d(net.head(h), 1)
        by_hand = net.classifier(torch.flatten(pooled, 1))
        student = net.extract(largest).eval()
        assert torch.allclose(student(x), by_hand, atol=1e-6)
        # Any sub-network: the supernet's forward on shared weights = the extracted copy.
        for seed in range(4):
            c = sample_subnet(space, net.options, random.Random(seed))
            assert torch.allclose(net(x, c), net.extract(c).eval()(x), atol=1e-6)


def test_candidate_outside_the_supernet_is_refused():
    net = SuperNet(tiny_space(), 1, 10)
    with pytest.raises(EdgeshrinkError, match="outside the supernet"):
        net.extract(candidate("w0.5:ir_k7_e3_r1_s1_c8,ds_k3_r1_s2_c16,ds_k3_r1_s1_c16"))
    with pytest.raises(EdgeshrinkError, match="outside"):
        net.extract(candidate("w0.5:ir_k3_e3_r3_s1_c8,ds_k3_r1_s2_c16,ds_k3_r1_s1_c16"))


@pytest.mark.slow
def test_supernet_cache_is_reused(tmp_path, digits16):
    teacher = label_teacher(digits16)
    settings = SupernetSettings(epochs=1, random_subnets=0)
    space = tiny_space(block_type=("ds",))
    first = train_supernet(space, digits16, teacher, settings, tmp_path, seed=0)
    (path,) = tmp_path.glob("supernet-*.pt")
    stamp = path.stat().st_mtime_ns
    again = train_supernet(space, digits16, teacher, settings, tmp_path, seed=0)
    assert first.trained_now and not again.trained_now
    assert again.train_seconds == pytest.approx(first.train_seconds)
    assert path.stat().st_mtime_ns == stamp
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other = train_supernet(space, digits16, teacher, settings, tmp_path, seed=1)
    assert other.trained_now and len(list(tmp_path.glob("supernet-*.pt"))) == 2


@pytest.mark.slow
def test_inherited_student_beats_random_init_after_the_same_short_finetune(digits16):
    teacher = label_teacher(digits16)
    space = parse_space({
        "input_resolution": 16, "stem_channels": 8, "head_channels": 32,
        "stages": [{"channels": 8, "stride": 1}, {"channels": 16, "stride": 2}],
        "choices": {"block": ["ir_k3_e3", "ds_k3"],
                    "width_mult": {"low": 0.5, "high": 1.0, "step": 0.5},
                    "temperature": {"low": 4.0, "high": 4.0}, "alpha": {"low": 0.5, "high": 0.5},
                    "sparsity": {"low": 0.0, "high": 0.0}, "precision": ["fp32"]},
    })
    torch.manual_seed(0)
    net = SuperNet(space, 1, 10)
    fit_supernet(net, digits16, teacher.train_logits, SupernetSettings(epochs=4, lr=0.03), seed=0)
    c = candidate("w0.5:ir_k3_e3_r1_s1_c8,ds_k3_r1_s2_c16")
    accuracies = {}
    for name in ("inherited", "random"):
        torch.manual_seed(0)
        student = build_student(c, 1, 10)
        if name == "inherited":
            prepare_inherited(student, net, digits16.train.x)
        train_distilled(student, digits16.train.x, digits16.train.y, teacher.train_logits,
                        epochs=1, settings=TrainSettings(), temperature=4.0, alpha=0.5)
        accuracies[name] = model_accuracy(student, digits16.val.x, digits16.val.y)
    assert accuracies["inherited"] > 0.3, accuracies
    assert accuracies["inherited"] > accuracies["random"] + 0.15, accuracies


def test_inherit_weights_copies_not_shares():
    net = SuperNet(tiny_space(), 1, 10)
    c = candidate("w1:ds_k3_r1_s1_c8,ds_k3_r1_s2_c16,ds_k3_r1_s1_c16")
    student = build_student(c, 1, 10)
    inherit_weights(student, net)
    before = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def _random_data():
    from edgeshrink.evaluators.data.splits import DataSplits, Split

    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(64, 1, 16, 16, generator=g), torch.randint(0, 10, (64,),
                                                                           generator=g))
    return DataSplits("random", split, split, split, 10, 1, 16)
