"""The base family on torchvision's architectures: every one is pruned by channels, quantized to
int8, exported and scored on its file, and its recorded pruning plan replays to the same shapes.
A network whose channel coupling breaks under pruning is refused in one line, never exported.
Plus the cheap parts: stage groups and the candidate's serialisation beside a student's."""

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
import torchvision
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.base_model import load_base
from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.data.splits import Split
from edgeshrink.evaluators.onnx_eval import onnx_predict
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.evaluators.pipeline import ARTIFACT, PRUNING_PLAN, evaluate_candidate
from edgeshrink.evaluators.teacher.load import load_teacher, teacher_spec_of_model
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.graph_stats import graph_stats
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.base_model.groups import group_of_layer, stage_groups
from edgeshrink.spaces.base_model.spec import ModelSpec, parse_model_spec
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.candidate import Candidate, parse_arch
from edgeshrink.spaces.families import candidate_from_dict
from edgeshrink.spaces.pruning.methods import PruneContext, prune_model

ARCHS = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
         "efficientnet_b0", "regnet_x_400mf", "shufflenet_v2_x1_0")
RESOLUTION = 32
# One pruning step, no fine-tune inside it, then the candidate's single distillation epoch over
# 128 images (two batches): enough to run every stage of the pipeline, not to learn anything.
SETTINGS = TrainSettings(epochs=1, finetune_epochs=0, prune_steps=1, calibration_samples=32,
                         channels_last=False)
# Half of every group's channels go: about a quarter of the MACs stay (0.26..0.30 measured). Less
# goes where channels are tied: RegNet's grouped convs (0.60) and the groups ShuffleNet's channel
# shuffles cross, left unpruned (0.50).
MAC_SHARE = {"regnet_x_400mf": 0.7, "shufflenet_v2_x1_0": 0.6}


def _subset(data, n_train: int, n_eval: int):
    def cut(split: Split, n: int) -> Split:
        return Split(split.x[:n], split.y[:n])

    return dataclasses.replace(data, train=cut(data.train, n_train), val=cut(data.val, n_eval),
                               test=cut(data.test, n_eval))


# ---------------------------------------------------------------- every torchvision family


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread: two threads on a shared 2-core machine spin against any other load
    (a mobilenet_v2 training step took 7.9 s on 2 threads beside one busy process, 0.39 s on
    1), and the tensors here are too small to gain from a second one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits32(tmp_path_factory, one_thread):
    """Real digits (one channel, so every model runs behind GreyToRGB) at 32 px, cut small."""
    data = load_data(DataSpec.parse("digits", None, False), RESOLUTION,
                     tmp_path_factory.mktemp("data"))
    return _subset(data, 128, 64)


def _unpruned_stats(candidate: BaseCandidate, data, path):
    """MACs and parameters of the user's model as the pipeline would export it, unpruned."""
    model = fold_batchnorm(load_base(candidate, data))
    export_onnx(model, path, data.in_channels, data.resolution)
    return graph_stats(path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_torchvision_model_is_pruned_quantized_and_replayed(arch, digits32, tmp_path):
    data = digits32
    torch.manual_seed(0)
    weights = tmp_path / f"{arch}.pt"
    torch.save(torchvision.models.get_model(arch, weights=None, num_classes=10).state_dict(),
               weights)
    spec = parse_model_spec(f"{arch}:{weights}")
    teacher = load_teacher(teacher_spec_of_model(spec), data, tmp_path / "teacher")
    candidate = BaseCandidate(model=spec, channel_ratio=0.5, precision="int8", finetune_epochs=1,
                              input_resolution=RESOLUTION)
    host = load_profile("host")

    result = evaluate_candidate(candidate, data, teacher, host, tmp_path / "pruned", SETTINGS,
                                seed=0)
    assert result.family == "base"

    # Fewer MACs and parameters than the unpruned fp32 model, in the exported file itself.
    dense = _unpruned_stats(candidate, data, tmp_path / "dense.onnx")
    exported = graph_stats(tmp_path / "pruned" / "model_fp32.onnx")
    assert (exported.macs, exported.params) == (result.macs, result.params)
    share = MAC_SHARE.get(arch, 0.4)
    assert result.macs < share * dense.macs, (result.macs, dense.macs)
    assert result.params < share * dense.params, (result.params, dense.params)
    channels = result.pruning["channels"]
    assert result.pruning["method"] == "channel" and channels
    assert all(after < before for before, after in channels.values())
    assert any(g["kept"] < g["total"] for g in result.channel_groups)

    # The accuracy is the shipped file's, re-scored here.
    artifact = tmp_path / "pruned" / ARTIFACT
    assert result.artifact == str(artifact)
    predictions = onnx_predict(artifact, data.val.x.numpy(), method=result.accuracy_method)
    assert float(np.mean(predictions == data.val.y.numpy())) == result.accuracy

    # int8 in the file: the report's count and the graph's own DequantizeLinear nodes.
    assert result.quantization["realised"] == {"int8": "native"}
    assert result.quantization["nodes"]["int8"] > 0
    graph = onnx.load(str(artifact)).graph
    assert any(n.op_type == "DequantizeLinear" for n in graph.node)

    # The recorded plan, replayed with the same seed, removes the same channels of every layer.
    plan = json.loads((tmp_path / "pruned" / PRUNING_PLAN).read_text())
    assert plan
    replayed = evaluate_candidate(candidate, data, teacher, host, tmp_path / "replayed",
                                  SETTINGS, seed=0, replay=plan)
    assert replayed.pruning["channels"] == channels
    assert replayed.channel_groups == result.channel_groups
    assert (replayed.macs, replayed.params) == (result.macs, result.params)
    assert json.loads((tmp_path / "replayed" / PRUNING_PLAN).read_text()) == plan
    # Same channels, same seed, same fine-tune: the same weights, and the same file's accuracy.
    first, again = (torch.load(tmp_path / d / "weights.pt", weights_only=True)
                    for d in ("pruned", "replayed"))
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert replayed.accuracy == result.accuracy


# ---------------------------------------------------------------- a network pruning would break


RIGID_MODULE = '''
import torch
from torch import nn


class Rigid(nn.Module):
    """Its forward hard-codes the channel count after ``body``: pruning breaks the view."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 3, padding=1)
        self.body = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.body(torch.relu(self.stem(x))))
        return self.head(x.mean((2, 3)).view(x.shape[0], 32))


def make():
    return Rigid()
'''


def test_a_network_pruning_breaks_is_refused_in_one_line_and_not_exported(
        digits16, tmp_path, monkeypatch):
    (tmp_path / "edgeshrink_test_rigid_net.py").write_text(RIGID_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = parse_model_spec("edgeshrink_test_rigid_net:make")
    assert spec.form == "factory" and spec.weights is None
    data = _subset(digits16, 64, 32)
    teacher = load_teacher(teacher_spec_of_model(spec), data, tmp_path / "teacher")
    candidate = BaseCandidate(model=spec, channel_ratio=0.5, precision="int8", finetune_epochs=0,
                              input_resolution=data.resolution)
    trials = tmp_path / "trials"
    trials.mkdir()
    out = trials / "0"
    with pytest.raises(EdgeshrinkError) as refused:
        evaluate_candidate(candidate, data, teacher, load_profile("host"), out, SETTINGS, seed=0)
    message = str(refused.value)
    assert "\n" not in message
    assert "cannot prune this network's channels safely" in message
    assert "layer 'body'" in message
    assert not list(trials.iterdir())  # no trial directory, not even a partial one


def test_the_same_network_unpruned_is_exported(digits16, tmp_path, monkeypatch):
    """The refusal above is pruning's: at ratio 0 the rigid network goes through."""
    (tmp_path / "edgeshrink_test_rigid_net.py").write_text(RIGID_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = parse_model_spec("edgeshrink_test_rigid_net:make")
    data = _subset(digits16, 64, 32)
    teacher = load_teacher(teacher_spec_of_model(spec), data, tmp_path / "teacher")
    candidate = BaseCandidate(model=spec, channel_ratio=0.0, precision="fp32", finetune_epochs=0,
                              input_resolution=data.resolution)
    result = evaluate_candidate(candidate, data, teacher, load_profile("host"), tmp_path / "t",
                                SETTINGS, seed=0)
    assert (tmp_path / "t" / ARTIFACT).is_file() and not (tmp_path / "t" / PRUNING_PLAN).exists()
    assert result.pruning["channels"] == {}


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3)))


def test_a_replayed_plan_removes_exactly_its_channels_whatever_their_rank():
    torch.manual_seed(0)
    model = _Tiny()
    gone = [0, 3, 5, 6]
    with torch.no_grad():
        model.conv1.weight[gone] *= 10  # the strongest channels: l1 ranking would keep them
    conv1, conv2 = model.conv1.weight.detach().clone(), model.conv2.weight.detach().clone()
    plan = json.loads(json.dumps([[("conv1", gone)]]))  # as read back from pruning_plan.json
    report = prune_model(model.train(), "channel", 0.5, "l1",
                         PruneContext(torch.randn(1, 1, 8, 8), steps=1, replay=plan))
    kept = [1, 2, 4, 7]
    assert torch.equal(model.conv1.weight, conv1[kept])
    assert torch.equal(model.conv2.weight, conv2[:, kept])  # its inputs follow, its outputs stay
    assert report.channels == {"conv1": (8, 4)} and report.plan == [[("conv1", gone)]]


# ---------------------------------------------------------------- stage groups, serialisation


def test_resnet18_has_four_stage_groups_from_conv1_to_layer4():
    model = torchvision.models.resnet18(num_classes=10)
    groups = stage_groups(model)
    assert [g.index for g in groups] == [0, 1, 2, 3]
    units = [u for g in groups for u in g.units]
    assert units == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    assert all(g.units for g in groups)
    # Every convolution belongs to a group, in definition order; the classifier to none.
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    order = [group_of_layer(groups, n) for n in convs]
    assert None not in order and order == sorted(order)
    assert group_of_layer(groups, "fc") is None
    assert group_of_layer(groups, "layer4.1.conv2") == 3


SPECS = {
    "torchvision": ModelSpec("torchvision", "/models/resnet18.pt", arch="resnet18"),
    "factory": ModelSpec("factory", None, factory="mypkg.nets:make_model"),
    "factory-weights": ModelSpec("factory", "/models/w.pt", factory="mypkg.nets:make_model"),
}


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
def test_base_candidate_round_trips_through_candidate_from_dict(spec):
    candidate = BaseCandidate(model=spec, channel_ratio=0.35, importance="taylor",
                              group_scales=(0.5, 1.0, 1.5, 2.0), pruning="global_magnitude",
                              sparsity=0.25, precision="int8",
                              stage_precisions=("fp32", "int8", "int8", "fp16"),
                              act_symmetric=True, qat=True, reduce_range=True, temperature=3.0,
                              alpha=0.6, finetune_epochs=2, input_resolution=48, groups=4)
    d = candidate.to_dict()
    assert d["family"] == "base" and d["model"] == spec.to_dict()
    assert candidate_from_dict(d) == candidate
    again = candidate_from_dict(json.loads(candidate.to_json()))
    assert isinstance(again, BaseCandidate) and again == candidate
    assert again.model == spec and again.group_scales == (0.5, 1.0, 1.5, 2.0)
    assert BaseCandidate.from_dict(d) == candidate


def test_base_candidate_defaults_round_trip():
    candidate = BaseCandidate(model=SPECS["torchvision"], channel_ratio=0.0)
    assert candidate_from_dict(json.loads(candidate.to_json())) == candidate


def test_a_student_dict_without_family_still_loads_as_a_candidate():
    width, stages = parse_arch("w1:ir_k3_e4_se_hs_r1_s1_c16,ds_k5_r1_s2_c24")
    student = Candidate(width_mult=width, stages=stages, temperature=4.0, alpha=0.5,
                        sparsity=0.0, precision="fp32")
    d = student.to_dict()
    assert "family" not in d
    loaded = candidate_from_dict(d)
    assert type(loaded) is Candidate and loaded == student
    assert candidate_from_dict({**d, "family": "student"}) == student


def test_a_dict_of_another_family_is_refused():
    d = BaseCandidate(model=SPECS["torchvision"], channel_ratio=0.2).to_dict()
    with pytest.raises(EdgeshrinkError, match="field 'family' must be one of"):
        candidate_from_dict({**d, "family": "weird"})
    del d["model"]
    with pytest.raises(EdgeshrinkError, match="'model' is missing"):
        candidate_from_dict(d)
