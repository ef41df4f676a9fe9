"""The base family's own steps: rebuild the user's model, prune its channels per stage group,
distil it back from the unpruned model, then add unstructured sparsity. Everything after that
(precision plan, QAT or folding, export, quantization, measurement) is the pipeline's shared
tail, so a base candidate's file is scored exactly as a student's is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.prune_context import distilled_prune_context
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.training import TrainSettings, train_distilled
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.base_model.groups import StageGroup, group_of_layer, stage_groups
from edgeshrink.spaces.base_model.load import build_model, fit_input
from edgeshrink.spaces.base_model.spec import ModelSpec
from edgeshrink.spaces.pruning.methods import PruneReport, prune_model
from edgeshrink.spaces.quantization.fake_quant import onnx_scope
from edgeshrink.spaces.quantization.plan import QuantPlan

FINETUNE_LR_SCALE = 0.1  # of the students' learning rate: the base is already trained


@dataclass
class PreparedBase:
    model: nn.Module
    pruning: PruneReport
    groups: list[StageGroup]
    channel_groups: list[dict[str, Any]] = field(default_factory=list)
    sparsity: dict[str, Any] = field(default_factory=dict)  # unstructured step's report


def load_base(candidate: BaseCandidate, data: DataSplits) -> nn.Module:
    """The user's model with its weights, adapted to the data's channels (grey -> RGB)."""
    if candidate.input_resolution != data.resolution:
        raise EdgeshrinkError(f"base candidate is for {candidate.input_resolution} px images; "
                              f"the data is {data.resolution} px")
    model = build_model(candidate.model, data.num_classes)
    return fit_input(model, data.train.x[:2], data.num_classes, candidate.model.label)


def base_architecture(candidate: BaseCandidate, data: DataSplits) -> nn.Module:
    """The user's architecture without its weights (a trial's ``weights.pt`` goes in next)."""
    spec = candidate.model
    bare = ModelSpec(spec.form, None, spec.arch, spec.factory)
    return fit_input(build_model(bare, data.num_classes), data.train.x[:2], data.num_classes,
                     spec.label)


def plan_to_text(plan: list[list[tuple[str, list[int]]]]) -> list[list[dict[str, str]]]:
    """A channel plan for ``config.yaml``: removed indices as ranges, e.g. ``0-5,7,9-12``."""
    def ranges(idxs: list[int]) -> str:
        out, start = [], None
        for i, v in enumerate(idxs):
            if start is None:
                start = v
            if i + 1 == len(idxs) or idxs[i + 1] != v + 1:
                out.append(f"{start}" if start == v else f"{start}-{v}")
                start = None
        return ",".join(out)
    return [[{"layer": name, "removed": ranges(sorted(idxs))} for name, idxs in step]
            for step in plan]


def plan_from_text(raw: Any) -> list[list[tuple[str, list[int]]]]:
    """Inverse of :func:`plan_to_text`; a malformed plan is one line naming the bad entry."""
    def expand(text: str) -> list[int]:
        out: list[int] = []
        for part in filter(None, str(text).split(",")):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
        return out
    try:
        return [[(str(e["layer"]), expand(e["removed"])) for e in step] for step in raw]
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeshrinkError(f"pruning_plan is malformed ({type(exc).__name__}: {exc}); "
                              "expected steps of {layer, removed: '0-5,7'} entries") from None


def check_base_model(spec: ModelSpec, data: DataSplits) -> None:
    """Rebuild the model once and run it on two images: every refusal is one line."""
    build = build_model(spec, data.num_classes)
    fit_input(build, data.train.x[:2], data.num_classes, spec.label)


def channel_groups(model: nn.Module, groups: list[StageGroup],
                   channels: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """Output channels kept / total per stage group, summed over its conv and linear layers."""
    out = []
    for g in groups:
        kept = total = 0
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and group_of_layer([g], name) is not None:
                now = m.weight.shape[0]
                before = channels.get(name, (now, now))[0]
                kept, total = kept + now, total + before
        out.append({"group": g.index, "units": list(g.units), "kept": kept, "total": total})
    return out


def prepare_base(candidate: BaseCandidate, data: DataSplits, teacher: Teacher, profile: Profile,
                 settings: TrainSettings, seed: int,
                 replay: list[list[tuple[str, list[int]]]] | None = None) -> PreparedBase:
    """Prune, fine-tune and sparsify a copy of the user's model; ``replay`` takes the channels
    removed from a recorded plan instead of ranking them again (``edgeshrink build``)."""
    torch.manual_seed(seed)
    model = load_base(candidate, data)
    groups = stage_groups(model, candidate.groups)
    if len(groups) != candidate.groups and (candidate.group_scales or candidate.stage_precisions):
        raise EdgeshrinkError(f"{candidate.model.label} has {len(groups)} stage groups; the "
                              f"candidate sets {candidate.groups}")
    ratios = {u: candidate.group_ratio(g.index) for g in groups for u in g.units}
    round_to = profile.block_for(candidate.precision)
    ctx = distilled_prune_context(candidate, data, teacher, settings, seed,
                                  lr_scale=FINETUNE_LR_SCALE, round_to=round_to,
                                  layer_ratios=ratios, replay=replay)
    report = prune_model(model.train(), "channel", candidate.channel_ratio, candidate.importance,
                         ctx)
    if candidate.finetune_epochs > 0:
        train_distilled(model, data.train.x, data.train.y, teacher.train_logits,
                        epochs=candidate.finetune_epochs, settings=settings,
                        temperature=candidate.temperature, alpha=candidate.alpha, seed=seed,
                        lr=settings.lr * FINETUNE_LR_SCALE, teacher=teacher.model)
    sparsity: dict[str, Any] = {}
    if candidate.pruning != "none":
        extra = distilled_prune_context(candidate, data, teacher, settings, seed + 500,
                                        lr_scale=FINETUNE_LR_SCALE, round_to=round_to)
        sparse = prune_model(model.train(), candidate.pruning, candidate.sparsity, "l1", extra)
        sparsity = {"method": sparse.method, "target": sparse.target_sparsity,
                    "achieved": sparse.achieved_sparsity,
                    "semi_structured_layers": sparse.semi_structured_layers}
    model.eval()
    return PreparedBase(model, report, groups, channel_groups(model, groups, report.channels),
                        sparsity)


def base_quant_plan(candidate: BaseCandidate, model: nn.Module,
                    groups: list[StageGroup]) -> QuantPlan:
    """Each stage group at its precision, the rest (classifier, pooling) at the candidate's."""
    prefixes = {onnx_scope(model, unit): candidate.precision_of_stage(g.index)
                for g in groups for unit in g.units
                if candidate.precision_of_stage(g.index) != candidate.precision}
    return QuantPlan(candidate.precision, prefixes, candidate.act_symmetric,
                     candidate.reduce_range)
