"""The block space: every block option builds, runs and exports; arch strings, candidates and
space files round-trip; bad input is named."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import optuna
import pytest
import torch
import yaml

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import EXPANSIONS, KERNELS
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.search.suggest import suggest_params
from edgeshrink.spaces import Candidate, StageSpec, load_space, parse_arch
from edgeshrink.spaces.blocks import arch_of, build_student
from edgeshrink.spaces.space import Categorical, IntRange, parse_space

REDUCED = Path(__file__).resolve().parents[2] / "benchmarks" / "reduced_space.yaml"
FIT = dict(temperature=4.0, alpha=0.5, sparsity=0.0, precision="fp32")


def _cand(arch: str, **over) -> Candidate:
    width, stages = parse_arch(arch)
    return Candidate(width_mult=width, stages=stages, **(FIT | over))


def _all_options_arch(block: str, se: bool, act: str) -> str:
    """One stride-1 stage per kernel (x expansion): every option of one block class in one net.

    Channels alternate 8/16, so some blocks keep a residual and some do not.
    """
    suffix = ("_se" if se else "") + ("_hs" if act == "hswish" else "")
    expansions = EXPANSIONS if block == "ir" else (None,)
    tokens = []
    for k in KERNELS:
        for e in expansions:
            expand = f"_e{e}" if e else ""
            tokens.append(f"{block}_k{k}{expand}{suffix}_r1_s1_c{8 * (1 + len(tokens) % 2)}")
    return "w1:" + ",".join(tokens)


def _block_nodes(graph: onnx.GraphProto, j: int, op: str) -> int:
    return sum(n.op_type == op and n.name.startswith(f"/blocks/blocks.{j}/") for n in graph.node)


@pytest.mark.parametrize("act", ["relu6", "hswish"])
@pytest.mark.parametrize("se", [False, True])
@pytest.mark.parametrize("block", ["ir", "ds"])
def test_every_block_option_builds_runs_and_exports(block, se, act, tmp_path):
    cand = _cand(_all_options_arch(block, se, act), stem_channels=8)
    torch.manual_seed(0)
    model = build_student(cand, in_channels=1, num_classes=10).eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.shape == (3, 10)
    assert arch_of(model) == cand.arch  # read back from the modules

    path = tmp_path / "m.onnx"
    export_onnx(model, path, 1, 16)
    graph = onnx.load(str(path)).graph
    got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    for j, stage in enumerate(cand.stages):  # depth 1: block j is stage j
        expand = stage.block == "ir" and stage.expansion != 1
        assert _block_nodes(graph, j, "Conv") == 2 + expand + 2 * se, stage.token()
        assert _block_nodes(graph, j, "HardSigmoid") == int(se)
        activated = 1 + expand if stage.block == "ir" else 2  # ds: depthwise and pointwise
        assert _block_nodes(graph, j, "HardSwish") == (activated if act == "hswish" else 0)
        assert _block_nodes(graph, j, "Clip") == (activated if act == "relu6" else 0)
        kernel = next(n for n in model.blocks[j].modules() if isinstance(n, torch.nn.Conv2d)
                      and n.groups > 1).kernel_size
        assert kernel == (stage.kernel, stage.kernel)


@pytest.mark.parametrize(
    "arch",
    [
        "w1:ir_k5_e6_se_hs_r2_s1_c16,ds_k3_hs_r1_s2_c24,skip_s1_c64,ir_k7_e1_r1_s2_c32",
        "w0.75:skip_s1_c16,ds_k7_se_r2_s2_c24,ir_k3_e4_se_r1_s1_c24,skip_s1_c64",
        "w0.5:ir_k5_e6_r2_s2_c24,ds_k3_r1_s1_c16",  # schema-1 tokens
    ],
)
def test_arch_string_round_trips_through_the_model(arch):
    model = build_student(_cand(arch), 1, 10)
    assert arch_of(model) == arch
    assert _cand(arch_of(model)) == _cand(arch)


def test_schema1_tokens_parse_to_the_same_stages():
    _, stages = parse_arch("w1:ir_k5_e6_r2_s2_c24,ds_k3_r1_s1_c16")
    assert stages == (StageSpec("ir", 5, 6, 2, 2, 24), StageSpec("ds", 3, 1, 1, 1, 16))
    assert stages[0].se is False and stages[0].act == "relu6"


def test_skip_stage_adds_no_module_and_keeps_shapes():
    cand = _cand("w1:ir_k3_e3_r2_s1_c16,skip_s1_c24,ds_k3_r1_s2_c32,skip_s1_c64")
    model = build_student(cand, 1, 10).eval()
    assert len(model.blocks) == 3
    assert model.stage_of_block == (0, 0, 2)
    feats = model.features(torch.zeros(2, 1, 16, 16))
    assert feats.shape == (2, 32, 8, 8)  # stage 3 skipped: the head sees stage 2's output
    assert model.head[0].in_channels == 32
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(EdgeshrinkError, match="stride-1"):
        parse_arch("w1:skip_s2_c24")


def test_residual_only_where_shapes_match_across_a_skip():
    # stem 16 -> [16 s1 x2] -> skip(64) -> [16 s1] -> [32 s1 x2] -> [32 s2]
    cand = _cand("w1:ir_k3_e3_r2_s1_c16,skip_s1_c64,ds_k3_r1_s1_c16,ir_k3_e1_r2_s1_c32,"
                 "ir_k3_e3_r1_s2_c32")
    model = build_student(cand, 1, 10)
    assert [b.has_skip for b in model.blocks] == [True, True, True, False, True, False]


def test_candidate_v2_json_round_trip_is_lossless():
    cand = _cand("w0.75:ir_k5_e6_se_hs_r2_s1_c16,skip_s1_c24", precision="int8",
                 pruning="channel", importance="taylor", stage_precisions=("int8", "fp32"),
                 act_symmetric=True, qat=True, hint_weight=0.25)
    back = Candidate.from_json(cand.to_json())
    assert back == cand and back.schema == 2
    assert back.precision_of_stage(0) == "int8" and back.precision_of_stage(1) == "fp32"
    assert _cand("w1:ds_k3_r1_s1_c16").precision_of_stage(0) == "fp32"


def test_schema1_dict_loads_with_defaults():
    old = {"alpha": 0.5, "head_channels": 128, "input_resolution": 16, "precision": "int8",
           "schema": 1, "sparsity": 0.3, "stage_precisions": None, "stem_channels": 16,
           "stages": ["ir_k5_e6_r2_s1_c16", "ds_k3_r1_s2_c24"], "temperature": 4.0,
           "width_mult": 0.75}
    del old["stage_precisions"]
    cand = Candidate.from_dict(old)
    assert cand == _cand("w0.75:ir_k5_e6_r2_s1_c16,ds_k3_r1_s2_c24", precision="int8",
                         sparsity=0.3)
    assert (cand.pruning, cand.importance, cand.stage_precisions, cand.act_symmetric, cand.qat,
            cand.hint_weight, cand.schema) == ("global_magnitude", "l1", (), False, False, 0.0, 2)
    with pytest.raises(EdgeshrinkError, match="'schema'"):
        Candidate.from_dict(old | {"schema": 3})


@pytest.mark.parametrize(
    "over,field",
    [
        ({"pruning": "random"}, "'pruning'"),
        ({"importance": "l3"}, "'importance'"),
        ({"precision": "int3"}, "'precision'"),
        ({"stage_precisions": ("int8",) * 3}, "'stage_precisions'"),
        ({"stage_precisions": ("int8", "bf16")}, "'stage_precisions'"),
        ({"qat": 1}, "'qat'"),
        ({"hint_weight": -0.5}, "'hint_weight'"),
    ],
)
def test_candidate_validation_names_the_field(over, field):
    with pytest.raises(EdgeshrinkError, match=field):
        _cand("w1:ir_k3_e3_r1_s1_c16,ds_k3_r1_s2_c24", **over)


@pytest.mark.parametrize(
    "token,field",
    [("ir_k4_e3_r1_s1_c16", "'kernel'"), ("ds_k3_e6_r1_s1_c16", "'expansion'"),
     ("ir_k3_e3_r0_s1_c16", "'depth'"), ("mb_k3_e3_r1_s1_c16", "'block'")],
)
def test_stage_validation_names_the_field(token, field):
    with pytest.raises(EdgeshrinkError, match=field):
        parse_arch(f"w1:{token}")


def test_unknown_activation_is_named():
    with pytest.raises(EdgeshrinkError, match="'act'"):
        StageSpec("ir", 3, 3, 1, 1, 16, act="gelu")


def _default_raw() -> dict:
    text = (Path(__file__).resolve().parents[2] / "spaces" / "default_space.yaml").read_text()
    return yaml.safe_load(text)


def _edit(path: str, value):
    raw = _default_raw()
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("choices.kernel", [3, 4], r"'choices.kernel' must be a non-empty subset of \[3, 5, 7\]"),
        ("choices.kernel", [], "'choices.kernel' must be a non-empty subset"),
        ("choices.expansion", [2, 6], "'choices.expansion' must be a non-empty subset"),
        ("choices.block_type", ["ir", "mb"], "'choices.block_type' must be a non-empty subset"),
        ("choices.block_type", ["ir", "skip"], "'choices.block_type' offers 'skip' to stage 1"),
        ("stages.2.block_type", ["skip"], r"'stages\[2\].block_type' offers 'skip' to stage 2"),
        ("stages.0.kernel", [9], r"'stages\[0\].kernel' must be a non-empty subset"),
        ("stages.0.colour", "red", r"unknown field\(s\) \['colour'\] in 'stages\[0\]'"),
        ("stages.1.stride", 3, r"'stages\[1\].stride' must be 1 or 2"),
        ("choices.se", ["yes"], "'choices.se' must be a non-empty subset"),
        ("choices.activation", ["gelu"], "'choices.activation' must be a non-empty subset"),
        ("choices.block", ["ir_k3_e3"], "not both"),
        ("choices.kernels", [3], r"unknown field\(s\) \['kernels'\] in 'choices'"),
        ("choices.mixed_precision", "yes", "'choices.mixed_precision' must be true or false"),
        ("choices.act_symmetric", [0, 1], "'choices.act_symmetric' must be a non-empty subset"),
        ("choices.qat", [], "'choices.qat' must be a non-empty subset"),
        ("choices.pruning", ["random"], "'choices.pruning' must be a non-empty subset"),
        ("choices.importance", ["l3"], "'choices.importance' must be a non-empty subset"),
        ("choices.precision", ["int3"], "'choices.precision' must be a non-empty subset"),
        ("choices.hint_weight", {"low": -1.0, "high": 1.0}, "'choices.hint_weight'"),
        ("choices.depth", {"low": 0, "high": 2}, "'choices.depth' needs 1 <= low <= high"),
        ("input_resolution", 300, "'input_resolution' must be in 8..256"),
        ("input_resolution", 4, "'input_resolution' must be in 8..256"),
    ],
)
def test_space_validation_names_the_field(path, value, message):
    with pytest.raises(EdgeshrinkError, match=message):
        parse_space(_edit(path, value), "bad.yaml")


def test_space_file_override_is_read(tmp_path):
    raw = _edit("choices.kernel", [5])
    raw["stages"][1]["expansion"] = [3, 6]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    space = load_space(path)
    assert space.distributions["stage0_kernel"] == IntRange(5, 5, 1)
    assert space.distributions["stage1_expansion"] == IntRange(3, 6, 3)  # evenly spaced: ordered
    assert space.distributions["stage2_expansion"] == Categorical((1, 3, 4, 6))


def test_absent_choices_take_the_candidate_defaults():
    raw = _default_raw()
    for name in ("se", "activation", "pruning", "importance", "act_symmetric", "qat",
                 "hint_weight", "mixed_precision"):
        del raw["choices"][name]
    raw["stages"][1]["block_type"] = ["ds"]
    space = parse_space(raw, "small.yaml")
    names = set(space.distributions)
    assert not {n for n in names if n.endswith(("_se", "_activation", "_precision"))}
    assert "stage1_expansion" not in names and "stage0_expansion" in names
    params = {n: (d.choices[-1] if isinstance(d, Categorical) else d.high)
              for n, d in space.distributions.items()}
    cand = space.candidate_from_params(params)
    assert cand.stages[1] == StageSpec("ds", 7, 1, 2, 2, 24)
    assert (cand.pruning, cand.importance, cand.act_symmetric, cand.qat, cand.hint_weight,
            cand.stage_precisions) == ("global_magnitude", "l1", False, False, 0.0, ())
    assert cand.stages[0].block == "skip" and cand.stages[0].token() == "skip_s1_c16"


def test_token_list_form_still_loads_and_samples_as_before():
    space = load_space(REDUCED)
    assert list(space.distributions) == [
        "width_mult", "stage0_block", "stage0_depth", "stage1_block", "stage1_depth",
        "temperature", "alpha", "sparsity", "precision"]
    params = {"width_mult": 0.5, "stage0_block": "ds_k5", "stage0_depth": 1,
              "stage1_block": "ir_k5_e6", "stage1_depth": 1, "temperature": 4.0, "alpha": 0.5,
              "sparsity": 0.5, "precision": "int8"}
    cand = space.candidate_from_params(params)
    assert cand.arch == "w0.5:ds_k5_r1_s1_c16,ir_k5_e6_r1_s2_c32"
    assert cand == _cand(cand.arch, precision="int8", sparsity=0.5)


def test_token_list_form_takes_new_tokens():
    raw = yaml.safe_load(REDUCED.read_text())
    raw["choices"]["block"] = ["ir_k7_e4_se_hs", "ds_k3_hs"]
    raw["stages"][0]["block"] = ["skip", "ds_k3"]
    space = parse_space(raw, "tokens.yaml")
    params = {"width_mult": 1.0, "stage0_block": "skip", "stage0_depth": 1,
              "stage1_block": "ir_k7_e4_se_hs", "stage1_depth": 1, "temperature": 4.0,
              "alpha": 0.5, "sparsity": 0.0, "precision": "fp32"}
    assert space.candidate_from_params(params).arch == "w1:skip_s1_c16,ir_k7_e4_se_hs_r1_s2_c32"
    raw["stages"][1]["block"] = ["skip"]
    with pytest.raises(EdgeshrinkError, match=r"'stages\[1\].block' offers 'skip' to stage 1"):
        parse_space(raw, "tokens.yaml")


def test_with_precisions_cuts_stage_precisions():
    space = load_space().with_precisions(("int8", "int4"))
    stage_dists = [space.distributions[f"stage{i}_precision"] for i in range(4)]
    assert space.distributions["precision"] == Categorical(("int8",))
    assert stage_dists == [Categorical(("int8",))] * 4
    with pytest.raises(EdgeshrinkError, match="choices.precision"):
        load_space().with_precisions(("fp16",))


def test_seeded_optuna_trials_build_valid_candidates():
    space = load_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(6):
        trial = study.ask()
        cand = space.candidate_from_params(suggest_params(trial, space))
        study.tell(trial, 0.0)
        stored = study.trials[-1].params  # what storage keeps
        assert space.candidate_from_params(stored) == cand
        assert type(stored["qat"]) is bool and type(stored["stage0_se"]) is bool
        assert stored["stage1_kernel"] in (3, 5, 7) and type(stored["stage1_kernel"]) is int
        assert len(cand.stage_precisions) == 4
        model = build_student(cand, 1, 10)
        assert arch_of(model) == cand.arch
        assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 10)


def test_default_space_declares_every_choice():
    raw = _default_raw()
    assert set(raw["choices"]) >= {"block_type", "kernel", "expansion", "se", "activation",
                                    "pruning", "importance", "precision", "mixed_precision",
                                    "act_symmetric", "qat", "hint_weight"}
    space = load_space()
    skip_ok = ["skip" in space.distributions[f"stage{i}_type"].choices for i in range(4)]
    assert skip_ok == [s == 1 for _, s in space.stage_skeleton] == [True, False, False, True]
