"""One candidate, end to end: distil, prune, export, quantize, then measure the exported file."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from edgeshrink.evaluators.data import DataSplits
from edgeshrink.evaluators.export import export_onnx
from edgeshrink.evaluators.onnx_eval import confusion_matrix, onnx_predict
from edgeshrink.evaluators.teacher import Teacher
from edgeshrink.evaluators.training import TrainSettings, model_accuracy, train_distilled
from edgeshrink.hardware_profiles.device_latency import device_latency
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.graph_stats import graph_stats
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.pruning import PRUNING_METHODS, make_permanent, weight_sparsity
from edgeshrink.spaces.quantization import quantize

ARTIFACT = "model.onnx"


@dataclass
class EvaluationResult:
    accuracy: float  # validation accuracy of the exported, quantized ONNX file
    latency_ms: float
    latency_p90_ms: float
    latency_raw_ms: float  # wall-clock median before drift correction
    gauge_ratio: float | None  # latency relative to the profile's gauge network
    latency_method: str  # "measured" here, or "predicted" by the profile's latency model
    size_bytes: int
    size_gzip_bytes: int  # what pruning's zeros save once the file is compressed for download
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
    stage_seconds: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

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
    candidate: Candidate,
    data: DataSplits,
    teacher: Teacher,
    profile: Profile,
    out_dir: Path,
    settings: TrainSettings = TrainSettings(),  # noqa: B008 - frozen dataclass
    seed: int = 0,
    gauge: Gauge | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> EvaluationResult:
    """Every metric returned is read off the file written to ``out_dir/model.onnx``.

    ``on_epoch(epoch, val_accuracy)`` sees the torch model's validation accuracy after each
    distillation epoch and may raise to abort a hopeless candidate (the search's early stop).
    """
    timer = _StageTimer()
    torch.manual_seed(seed)
    model = build_student(candidate, data.in_channels, data.num_classes)

    def after_epoch(epoch: int) -> None:
        on_epoch(epoch, model_accuracy(model, data.val.x, data.val.y))

    with timer("distill"):
        train_distilled(model, data.train.x, data.train.y, teacher.train_logits,
                        epochs=settings.epochs, settings=settings,
                        temperature=candidate.temperature, alpha=candidate.alpha, seed=seed,
                        after_epoch=after_epoch if on_epoch else None)
    with timer("prune"):
        if candidate.sparsity > 0:
            PRUNING_METHODS["global_magnitude"](model, candidate.sparsity)
            # Short fine-tune with the masks held, so the survivors recover the lost accuracy.
            train_distilled(model, data.train.x, data.train.y, teacher.train_logits,
                            epochs=settings.finetune_epochs, settings=settings,
                            temperature=candidate.temperature, alpha=candidate.alpha,
                            seed=seed + 1, lr=settings.lr * 0.1)
            make_permanent(model)
    sparsity = weight_sparsity(model)

    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with timer("export"):
        fp32_path = work / "model_fp32.onnx"
        export_onnx(model, fp32_path, data.in_channels, data.resolution)
        torch.save(model.state_dict(), work / "weights.pt")
    with timer("quantize"):
        calib = data.train.x[: settings.calibration_samples].numpy()
        quantize(candidate.precision, fp32_path, work / ARTIFACT, calib)
    with timer("measure"):
        artifact = work / ARTIFACT
        labels = data.val.y.numpy()
        predictions = onnx_predict(artifact, data.val.x.numpy())
        accuracy = float((predictions == labels).mean())
        latency = device_latency(artifact, data.val.x[:1].numpy(), profile, gauge)
        stats = graph_stats(fp32_path)
        size = artifact.stat().st_size
        gz = len(gzip.compress(artifact.read_bytes(), compresslevel=6))
    (work / "candidate.json").write_text(candidate.to_json())
    # Publish the trial's files all at once, so a crash never leaves a half-written directory.
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(work, out_dir)

    result = EvaluationResult(
        accuracy=accuracy,
        latency_ms=latency.median_ms,
        latency_p90_ms=latency.p90_ms,
        latency_raw_ms=latency.raw_median_ms,
        gauge_ratio=latency.gauge_ratio,
        latency_method=latency.method,
        size_bytes=size,
        size_gzip_bytes=gz,
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
        stage_seconds=timer.seconds,
        versions=tool_versions(),
    )
    (out_dir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


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

