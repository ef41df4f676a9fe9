"""From a pruned student to a measured ONNX file: the steps the trial pipeline and the latency
preview (:mod:`.latency_preview`) share, so the preview times exactly what a trial will."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgeshrink.evaluators.compact_onnx import compact_tensor_names
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.timed_file import TorchSource, timed_file
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.device_latency import DeviceLatency, device_latency
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.spaces.blocks import Student
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.quantization.onnx_qdq import QuantReport, quantize_with_plan
from edgeshrink.spaces.quantization.plan import QuantPlan, plan_for


def channel_round_to(candidate: Candidate, profile: Profile) -> int:
    """Channel pruning keeps counts in multiples of the device's channel block (see
    ``pipeline._prune_context``); the preview must round the same way to get the same shapes."""
    return profile.block_for(candidate.precision)


def quant_plan(candidate: Candidate, model: Student) -> QuantPlan:
    """Each block at its stage's precision, the rest (stem, head) at the candidate's."""
    return plan_for([candidate.precision_of_stage(s) for s in model.stage_of_block],
                    candidate.precision, candidate.act_symmetric, candidate.reduce_range)


def quantize_artifact(fp32_path: Path, dst: Path, data: DataSplits, settings: TrainSettings,
                      plan: QuantPlan) -> QuantReport:
    """Quantize ``fp32_path`` by ``plan`` into ``dst`` (calibrated on the first training images)
    and shorten its tensor names, as a deployment would ship it."""
    calib = data.train.x[: settings.calibration_samples].numpy()
    quant = quantize_with_plan(fp32_path, dst, calib, plan)
    compact_tensor_names(dst)
    return quant


def torch_source(model: nn.Module, plan: QuantPlan, data: DataSplits,
                 settings: TrainSettings) -> TorchSource:
    """What the artifact is exported from, with the images its int8 was calibrated on."""
    return TorchSource(model, plan, data.train.x[: settings.calibration_samples], data.val.x[:1])


def artifact_latency(artifact: Path, data: DataSplits, profile: Profile, gauge: Gauge | None,
                     quant: QuantReport, source: TorchSource | None = None) -> DeviceLatency:
    """The profile's latency of ``artifact``; predicted where a precision is only simulated on
    this host (host timing of fp32 kernels is not the device's). A profile measured with another
    runtime times the artifact's conversion from ``source`` (``timed_file``)."""
    sample = data.val.x[:1].numpy()
    if quant.simulated:
        return device_latency(artifact, sample, profile, gauge, method="predicted")
    return device_latency(timed_file(artifact, profile, source), sample, profile, gauge)
