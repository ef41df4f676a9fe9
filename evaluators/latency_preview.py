"""A candidate's latency before any training: the early abort's bound on "no slower".

A trial's latency does not depend on its weights: the blocks, width, channel-pruned channel
counts and precision plan fix the exported graph, and the profile's latency model reads shapes
and precisions off it (onnxruntime's dense kernels likewise run the same graph in the same time
whatever the values). So the untrained student, pruned to the same channel counts (which depend
on the sparsity and the channel block, not on which channels are ranked lowest), BN-folded,
exported and quantized by the same plan, has the latency the trained artifact will have:
exactly on a predicted profile, up to timing noise on a measured one
(``tests/evaluators/test_latency_preview.py`` checks both the shapes and the predicted latency).

The exception: a profile with sparse kernels (``[sparsity] support`` other than "none") times a
layer by its share of zero weights, and which weights end up zero (magnitude thresholds, int8
rounding) depends on training. :func:`preview_blocker` says so, and no preview is made there.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.artifact import (
    artifact_latency,
    channel_round_to,
    quant_plan,
    quantize_artifact,
    torch_source,
)
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.pruning.methods import PruneContext, prune_model

_LOSS_SAMPLES = 64  # Taylor importance ranks channels on this many images' gradients


@dataclass(frozen=True)
class LatencyPreview:
    latency_ms: float
    method: str  # "predicted" or "measured": how the trained artifact's latency will be taken


def preview_blocker(candidate: Candidate, profile: Profile) -> str | None:
    """Why the preview would not be the trained artifact's latency, or None where it is."""
    if profile.sparsity_support != "none":
        return (f"profile {profile.name!r} has {profile.sparsity_support} sparse kernels: the "
                f"latency depends on which trained weights end up zero ({candidate.pruning} "
                "pruning, int8 rounding)")
    return None


def preview_latency(candidate: Candidate, data: DataSplits, profile: Profile, workdir: Path,
                    settings: TrainSettings = TrainSettings(),  # noqa: B008 - frozen dataclass
                    gauge: Gauge | None = None) -> LatencyPreview:
    """The latency ``candidate``'s trained artifact will have, from an untrained student.

    Prunes in one step without fine-tuning, folds BatchNorm, exports and quantizes as the
    pipeline does, then measures the file the way the pipeline measures the artifact. Files go
    to a temporary folder inside ``workdir``, removed afterwards. The caller's torch random
    state is left as it was, so a trial trains the same with or without a preview.
    """
    why = preview_blocker(candidate, profile)
    if why is not None:
        raise EdgeshrinkError(f"no latency preview for this candidate: {why}")
    x, y = data.train.x, data.train.y

    def loss_fn(model: nn.Module) -> torch.Tensor:  # labels only: no teacher needed to rank
        return nn.functional.cross_entropy(model(x[:_LOSS_SAMPLES]), y[:_LOSS_SAMPLES])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_student(candidate, data.in_channels, data.num_classes)
        prune_model(model, candidate.pruning, candidate.sparsity, candidate.importance,
                    PruneContext(example_input=x[:1], loss_fn=loss_fn, finetune=None, steps=1,
                                 round_to=channel_round_to(candidate, profile)))
    plan = quant_plan(candidate, model)
    folded = fold_batchnorm(model)
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="preview-", dir=workdir) as tmp:
        fp32_path, artifact = Path(tmp) / "model_fp32.onnx", Path(tmp) / "model.onnx"
        export_onnx(folded, fp32_path, data.in_channels, data.resolution)
        quant = quantize_artifact(fp32_path, artifact, data, settings, plan)
        latency = artifact_latency(artifact, data, profile, gauge, quant,
                                   torch_source(folded, plan, data, settings))
    return LatencyPreview(latency.median_ms, latency.method)
