"""One candidate, end to end: distil, prune, export, quantize, then measure the exported file."""

from __future__ import annotations

import contextlib
import gzip
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from edgeshrink.core.atomic import atomic_directory, atomic_write_text
from edgeshrink.evaluators.artifact import (
    artifact_latency,
    channel_round_to,
    quant_plan,
    quantize_artifact,
    torch_source,
)
from edgeshrink.evaluators.base_model import FINETUNE_LR_SCALE, base_quant_plan, prepare_base
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.device import describe_device
from edgeshrink.evaluators.hints import teacher_hints
from edgeshrink.evaluators.latency_preview import preview_blocker, preview_latency
from edgeshrink.evaluators.onnx_eval import confusion_matrix, onnx_predict
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.evaluators.prune_context import distilled_prune_context
from edgeshrink.evaluators.size_accounting import weight_sizes
from edgeshrink.evaluators.supernet import SuperNet, prepare_inherited
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.training import Hint, TrainSettings, model_accuracy, train_distilled
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.graph_stats import graph_stats
from edgeshrink.hardware_profiles.int8_arithmetic import int8_arithmetic
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.families import AnyCandidate, family_of
from edgeshrink.spaces.pruning.methods import (
    PruneContext,
    PruneReport,
    prune_model,
    weight_sparsity,
)
from edgeshrink.spaces.quantization.fake_quant import finish_qat, prepare_qat, qat_bits
from edgeshrink.spaces.quantization.plan import QuantPlan

ARTIFACT = "model.onnx"
PRUNING_PLAN = "pruning_plan.json"  # base family: the channels each pruning step removed


@dataclass
class EvaluationResult:
    accuracy: float  # validation accuracy of the exported, quantized ONNX file
    # whose int8 arithmetic computed it (hardware_profiles.int8_arithmetic.ACCURACY_METHODS)
    accuracy_method: str
    latency_ms: float
    latency_p90_ms: float
    latency_raw_ms: float  # wall-clock median before drift correction
    gauge_ratio: float | None  # latency relative to the profile's gauge network
    latency_method: str  # "measured" here, or "predicted" by the profile's latency model
    size_bytes: int
    size_gzip_bytes: int  # what pruning's zeros save once the file is compressed for download
    dense_weight_bytes: int  # every weight element at its stored precision
    sparse_weight_bytes: int  # what a sparse format (bitmask or 2:4 indices) would store
    params: int
    nonzero_params: int
    macs: int
    weight_sparsity: float
    confusion: list[list[int]]  # validation split, rows = true class
    latency_runs: int
    threads: int
    artifact: str
    layer_latency_ms: dict[str, float] | None = None  # predicted profiles: per layer
    energy_mj: float | None = None  # profiles with energy figures
    device_weight_bytes: int | None = None  # weights as the device stores them
    peak_activation_bytes: int | None = None
    memory_problems: list[str] = field(default_factory=list)  # why it does not fit the device
    memory_overflow: float | None = None  # > 0: does not fit (devices with memory limits)
    pruning: dict[str, Any] = field(default_factory=dict)  # spaces.pruning.PruneReport
    # spaces.quantization.QuantReport: per precision "native" or "simulated" on this host
    quantization: dict[str, Any] = field(default_factory=dict)
    hint_applied: bool = False  # feature distillation ran (the teacher exposes feature maps)
    # Latency of the untrained, pruned, quantized student (evaluators/latency_preview.py), taken
    # before training when the search's early abort asked for it; None otherwise.
    preview_latency_ms: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)  # the scoring machine (hardware_profiles.cpu)
    family: str = "student"  # spaces.families.FAMILIES
    train_device: dict[str, Any] = field(default_factory=dict)  # evaluators.device
    # base family: output channels kept / total per stage group (evaluators.base_model)
    channel_groups: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tool_versions() -> dict[str, str]:
    names = ("edgeshrink", "torch", "onnxruntime", "onnx", "optuna")
    out = {"python": platform.python_version()}
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


def evaluate_candidate(
    candidate: AnyCandidate,
    data: DataSplits,
    teacher: Teacher,
    profile: Profile,
    out_dir: Path,
    settings: TrainSettings = TrainSettings(),  # noqa: B008 - frozen dataclass
    seed: int = 0,
    gauge: Gauge | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    supernet: SuperNet | None = None,
    on_preview: Callable[[float, str], None] | None = None,
    accuracy_method: str | None = None,
    replay: list[list[tuple[str, list[int]]]] | None = None,
) -> EvaluationResult:
    """Every metric returned is read off the file written to ``out_dir/model.onnx``.

    ``on_epoch(epoch, val_accuracy)`` sees the torch model's validation accuracy after each
    distillation epoch and may raise to abort a hopeless candidate (the search's early stop).
    With a ``supernet`` (weight sharing) the student inherits its weights and recalibrated
    BatchNorm, and distils for the supernet's short fine-tune instead of training from scratch.
    ``on_preview(latency_ms, method)`` sees the latency the artifact will have, previewed on the
    untrained student before any training (stage "preview"), and may raise to abort then; it is
    not called where the profile makes latency depend on trained weights (``preview_blocker``).
    A base candidate (the user's own model, ``BaseCandidate``) is pruned and distilled by
    :mod:`.base_model` instead of trained; ``replay`` is its recorded channel plan
    (``pruning_plan.json``), which a build applies without ranking channels again.
    ``accuracy_method`` defaults to the profile's (``int8_arithmetic``): the device's int8
    arithmetic on a predicted profile, this machine's kernels on a measured one.
    """
    arithmetic = int8_arithmetic(profile)
    accuracy_method = accuracy_method or arithmetic.accuracy_method
    timer = _StageTimer()
    preview = None
    if (on_preview is not None and isinstance(candidate, Candidate)
            and preview_blocker(candidate, profile) is None):
        with timer("preview"):
            preview = preview_latency(candidate, data, profile, out_dir.parent, settings, gauge)
        on_preview(preview.latency_ms, preview.method)
    if isinstance(candidate, BaseCandidate):
        with timer("prune"):  # with the fine-tunes that follow each pruning step
            prepared = _prepare_base(candidate, data, teacher, profile, settings, seed, replay)
    else:
        prepared = _prepare_student(candidate, data, teacher, profile, settings, seed, timer,
                                    on_epoch, supernet)
    model, pruning, plan = prepared.model, prepared.pruning, prepared.plan
    sparsity = weight_sparsity(model)
    float_weights = model.state_dict()  # weights.pt: before BatchNorm folding and QAT
    with timer("qat"):
        if candidate.qat and set(plan.precisions) & {"int8", "int4"}:
            # Fake-quantized fine-tune on folded weights, at the grid onnxruntime then stores.
            model = prepare_qat(model, qat_bits(model, plan), act_symmetric=candidate.act_symmetric)
            train_distilled(model, data.train.x, data.train.y, teacher.train_logits,
                            epochs=max(1, settings.finetune_epochs), settings=settings,
                            temperature=candidate.temperature, alpha=candidate.alpha,
                            seed=seed + 100, lr=settings.lr * prepared.qat_lr_scale,
                            teacher=teacher.model)
            model = finish_qat(model)
        else:
            model = fold_batchnorm(model)  # what a deployment runtime does before quantizing

    # Publish the trial's files all at once, so a crash never leaves a half-written directory.
    with atomic_directory(out_dir) as work:
        with timer("export"):
            fp32_path = work / "model_fp32.onnx"
            export_onnx(model, fp32_path, data.in_channels, data.resolution)
            torch.save(float_weights, work / "weights.pt")
        with timer("quantize"):
            quant = quantize_artifact(fp32_path, work / ARTIFACT, data, settings, plan)
        with timer("measure"):
            artifact = work / ARTIFACT
            labels = data.val.y.numpy()
            predictions = onnx_predict(artifact, data.val.x.numpy(), method=accuracy_method)
            accuracy = float((predictions == labels).mean())
            latency = artifact_latency(artifact, data, profile, gauge, quant,
                                       torch_source(model, plan, data, settings))
            stats = graph_stats(fp32_path)
            size = artifact.stat().st_size
            gz = len(gzip.compress(artifact.read_bytes(), compresslevel=6))
            sizes = weight_sizes(artifact)
        (work / "candidate.json").write_text(candidate.to_json())
        if pruning.plan:  # which channels went: `edgeshrink build` replays it
            (work / PRUNING_PLAN).write_text(json.dumps(pruning.plan))

    result = EvaluationResult(
        accuracy=accuracy,
        accuracy_method=accuracy_method,
        latency_ms=latency.median_ms,
        latency_p90_ms=latency.p90_ms,
        latency_raw_ms=latency.raw_median_ms,
        gauge_ratio=latency.gauge_ratio,
        latency_method=latency.method,
        size_bytes=size,
        size_gzip_bytes=gz,
        dense_weight_bytes=sizes.dense_bytes,
        sparse_weight_bytes=sizes.sparse_bytes,
        params=stats.params,
        nonzero_params=stats.nonzero_params,
        macs=stats.macs,
        weight_sparsity=sparsity,
        confusion=confusion_matrix(predictions, labels, data.num_classes),
        latency_runs=latency.runs,
        threads=latency.threads,
        artifact=str(out_dir / ARTIFACT),
        layer_latency_ms=latency.layer_ms,
        energy_mj=latency.energy_mj,
        device_weight_bytes=latency.device_weight_bytes,
        peak_activation_bytes=latency.peak_activation_bytes,
        memory_problems=list(latency.memory_problems),
        memory_overflow=latency.memory_overflow,
        pruning={k: v for k, v in asdict(pruning).items() if k != "plan"} | prepared.extra,
        quantization=asdict(quant),
        hint_applied=prepared.hint is not None,
        preview_latency_ms=None if preview is None else preview.latency_ms,
        stage_seconds=timer.seconds,
        versions=tool_versions(),
        cpu=arithmetic.cpu.to_dict(),
        family=family_of(candidate),
        train_device=describe_device(settings.device),
        channel_groups=prepared.channel_groups,
    )
    atomic_write_text(out_dir / "metrics.json", json.dumps(result.to_dict(), indent=2))
    return result


@dataclass
class _Prepared:
    """A family's model ready for the shared tail: trained, pruned, with its precision plan."""

    model: torch.nn.Module
    pruning: PruneReport
    plan: QuantPlan
    hint: Hint | None = None
    qat_lr_scale: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)  # recorded under the trial's "pruning"
    channel_groups: list[dict[str, Any]] = field(default_factory=list)


def _prepare_student(candidate: Candidate, data: DataSplits, teacher: Teacher, profile: Profile,
                     settings: TrainSettings, seed: int, timer: _StageTimer,
                     on_epoch: Callable[[int, float], None] | None,
                     supernet: SuperNet | None) -> _Prepared:
    torch.manual_seed(seed)
    model = build_student(candidate, data.in_channels, data.num_classes)
    epochs = settings.epochs
    if supernet is not None:
        prepare_inherited(model, supernet, data.train.x, seed)
        epochs = supernet.settings.finetune_epochs

    def after_epoch(epoch: int) -> None:
        on_epoch(epoch, model_accuracy(model, data.val.x, data.val.y))

    with timer("distill"):
        hint = None
        if candidate.hint_weight > 0:
            targets = teacher_hints(teacher.model, data.train.x)
            hint = Hint(targets, candidate.hint_weight) if targets is not None else None
        train_distilled(model, data.train.x, data.train.y, teacher.train_logits,
                        epochs=epochs, settings=settings,
                        temperature=candidate.temperature, alpha=candidate.alpha, seed=seed,
                        after_epoch=after_epoch if on_epoch else None, hint=hint,
                        teacher=teacher.model)
    with timer("prune"):
        pruning = prune_model(model, candidate.pruning, candidate.sparsity, candidate.importance,
                              _prune_context(candidate, data, teacher, profile, settings, seed))
    return _Prepared(model, pruning, quant_plan(candidate, model), hint)


def _prepare_base(candidate: BaseCandidate, data: DataSplits, teacher: Teacher, profile: Profile,
                  settings: TrainSettings, seed: int,
                  replay: list[list[tuple[str, list[int]]]] | None) -> _Prepared:
    base = prepare_base(candidate, data, teacher, profile, settings, seed, replay)
    extra = {"unstructured": base.sparsity} if base.sparsity else {}
    return _Prepared(base.model, base.pruning, base_quant_plan(candidate, base.model, base.groups),
                     qat_lr_scale=FINETUNE_LR_SCALE * 0.5, extra=extra,
                     channel_groups=base.channel_groups)


def _prune_context(candidate: Candidate, data: DataSplits, teacher: Teacher, profile: Profile,
                   settings: TrainSettings, seed: int) -> PruneContext:
    """Fine-tune after each pruning step by distillation at 0.3x the learning rate, so the
    survivors recover (50% channels of a digits student, l1: 0.975 at 0.1x, 0.986 at 0.3x,
    0.981 at 1x, dense 0.992); Taylor importance takes its gradients from the same loss.
    Channel pruning keeps channel counts in multiples of the device's channel block: a pruned
    layer off the block runs at the unaligned efficiency and can end up slower (16 on this
    host; 0.078 ms against 0.093 ms unrounded, measured)."""
    return distilled_prune_context(candidate, data, teacher, settings, seed, lr_scale=0.3,
                                   round_to=channel_round_to(candidate, profile))


class _StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str) -> _StageTimer:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._stage] = round(time.perf_counter() - self._start, 3)

