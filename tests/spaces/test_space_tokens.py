"""The schema-1 (token-list) form of a space file: it keeps loading, sampling and building as
before; the block form (schema 2) is tested in test_space_blocks.py."""

import pytest
import torch

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.spaces import Candidate, format_arch, load_space, parse_arch
from edgeshrink.spaces.blocks import BLOCKS, build_student
from edgeshrink.spaces.space import parse_space

# The schema-1 default space (block tokens): this form must keep loading and sampling as before.
TOKEN_SPACE = {
    "stages": [{"channels": 16, "stride": 1}, {"channels": 24, "stride": 2},
               {"channels": 32, "stride": 2}, {"channels": 64, "stride": 1}],
    "choices": {
        "block": ["ir_k3_e3", "ir_k3_e6", "ir_k5_e3", "ir_k5_e6", "ds_k3", "ds_k5"],
        "depth": {"low": 1, "high": 2}, "width_mult": {"low": 0.5, "high": 1.0, "step": 0.25},
        "temperature": {"low": 1.0, "high": 8.0}, "alpha": {"low": 0.0, "high": 0.9},
        "sparsity": {"low": 0.0, "high": 0.8, "step": 0.05}, "precision": ["fp32", "int8"],
    },
}


def _token_space():
    return parse_space(TOKEN_SPACE, "token_space.yaml")


def _params(space, block="ir_k5_e6", depth=2, **over):
    p = {f"stage{i}_block": block for i in range(len(space.stage_skeleton))}
    p |= {f"stage{i}_depth": depth for i in range(len(space.stage_skeleton))}
    p |= dict(width_mult=0.75, temperature=4.0, alpha=0.5, sparsity=0.3, precision="int8")
    return p | over


def test_arch_string_round_trips():
    space = _token_space()
    cand = space.candidate_from_params(_params(space, block="ds_k3", depth=1))
    text = cand.arch
    assert text == "w0.75:ds_k3_r1_s1_c16,ds_k3_r1_s2_c24,ds_k3_r1_s2_c32,ds_k3_r1_s1_c64"
    assert format_arch(*parse_arch(text)) == text


def test_candidate_json_round_trip_is_lossless():
    space = _token_space()
    cand = space.candidate_from_params(_params(space))
    assert Candidate.from_json(cand.to_json()) == cand


@pytest.mark.parametrize("bad", ["w1:ir_k5", "x1:ir_k5_e6_r1_s1_c16", "w1:zz"])
def test_bad_arch_string_is_named(bad):
    with pytest.raises(EdgeshrinkError, match="invalid"):
        parse_arch(bad)


@pytest.mark.parametrize("block", ["ir_k3_e3", "ir_k5_e6", "ds_k3", "ds_k5"])
def test_every_block_builds_and_runs(block):
    space = _token_space()
    cand = space.candidate_from_params(_params(space, block=block))
    model = build_student(cand, in_channels=1, num_classes=10).eval()
    out = model(torch.zeros(2, 1, 16, 16))
    assert out.shape == (2, 10)
    assert {type(m).__name__ for m in model.modules()} & {b.__name__ for b in BLOCKS.values()}


def test_residual_only_where_shapes_match():
    space = _token_space()
    cand = space.candidate_from_params(_params(space, block="ir_k3_e3", depth=2, width_mult=1.0))
    model = build_student(cand, 1, 10)
    skips = [b.has_skip for b in model.blocks]
    # stage0 (16->16, s1) both blocks skip; later stages: first block changes shape, second skips.
    assert skips == [True, True, False, True, False, True, False, True]


def _raw():
    return {
        "stages": [{"channels": 8, "stride": 1}],
        "choices": {
            "block": ["ir_k3_e3"], "depth": {"low": 1, "high": 1},
            "width_mult": {"low": 1.0, "high": 1.0}, "temperature": {"low": 1, "high": 4},
            "alpha": {"low": 0, "high": 0.5}, "sparsity": {"low": 0, "high": 0.5},
            "precision": ["fp32"],
        },
    }


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("sparsity", {"low": 0.0, "high": 1.5}, "choices.sparsity"),
        ("precision", ["int3"], "choices.precision"),
        ("block", ["qq_k3"], "unknown block type"),
        ("block", ["ir_k4_e3"], "kernel must be odd"),
        ("alpha", {"low": 0.2}, "choices.alpha"),
    ],
)
def test_space_validation_names_the_field(field, value, message):
    raw = _raw()
    raw["choices"][field] = value
    with pytest.raises(EdgeshrinkError, match=message):
        parse_space(raw, "my.yaml")


def test_space_file_errors(tmp_path):
    with pytest.raises(EdgeshrinkError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [\n")
    with pytest.raises(EdgeshrinkError, match="not valid YAML"):
        load_space(bad)
