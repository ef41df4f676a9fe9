"""The teacher as the reference point: its accuracy and latency, taken like a trial's, so the
report can say what each student gives up or gains."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgeshrink.core.atomic import atomic_path
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.teacher.load import TRAINED_HERE, TeacherSpec
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.spaces.base_model.load import GreyToRGB, first_line


def _teacher_onnx(teacher: Teacher, spec: TeacherSpec | None, data: DataSplits,
                  work_dir: Path) -> tuple[Path, np.ndarray]:
    """The teacher as an ONNX file, and one input image in the channels it takes."""
    from edgeshrink.evaluators.onnx_export import export_onnx

    model = teacher.model
    rgb = isinstance(model, GreyToRGB)
    sample = data.val.x[:1].expand(-1, 3, -1, -1) if rgb else data.val.x[:1]
    if spec is not None and spec.form == "onnx":
        return Path(spec.path), sample.numpy()
    inner = model.inner if rgb else model
    path = work_dir / "teacher.onnx"
    with atomic_path(path) as tmp:
        export_onnx(inner, tmp, int(sample.shape[1]), data.resolution)
    return path, np.ascontiguousarray(sample.numpy())


def teacher_reference(teacher: Teacher, spec: TeacherSpec | None, data: DataSplits,
                      profile: Profile, work_dir: Path, gauge: Gauge | None = None
                      ) -> dict[str, Any]:
    """The teacher's accuracy and latency, taken like a trial's: what a student gives up or gains.

    Latency uses the profile's method (and the study's gauge) on the teacher as fp32 ONNX (or,
    on a profile measured with LiteRT, its fp32 .tflite); a teacher that cannot be exported
    keeps its accuracy and records why latency is missing.
    """
    import torch

    from edgeshrink.evaluators.timed_file import TorchSource, timed_file
    from edgeshrink.hardware_profiles.device_latency import device_latency
    from edgeshrink.hardware_profiles.graph_stats import graph_stats
    from edgeshrink.spaces.quantization.plan import QuantPlan

    ref: dict[str, Any] = {"source": spec.label if spec else TRAINED_HERE,
                           "accuracy": teacher.val_accuracy}
    try:
        path, sample = _teacher_onnx(teacher, spec, data, work_dir)
        model = teacher.model.inner if isinstance(teacher.model, GreyToRGB) else teacher.model
        x = torch.from_numpy(sample)
        timed = timed_file(path, profile, TorchSource(model, QuantPlan("fp32"), x, x),
                           work_dir / "teacher.tflite")
        latency = device_latency(timed, sample, profile, gauge)
        stats = graph_stats(path)
    except Exception as exc:  # noqa: BLE001 - the reference is informative, never fatal
        ref["latency_error"] = f"{type(exc).__name__}: {first_line(exc)[:200]}"
        return ref
    ref.update(latency_ms=latency.median_ms, latency_p90_ms=latency.p90_ms,
               latency_method=latency.method, params=stats.params, macs=stats.macs,
               size_bytes=path.stat().st_size)
    return ref


def number_or_none(value: Any) -> float | None:
    """A finite float, or None for anything else (a missing or broken stored value)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def reference_text(reference: dict[str, Any]) -> str:
    """One line: the teacher's source, accuracy and latency (or why latency is missing)."""
    acc = number_or_none(reference.get("accuracy"))
    lat = number_or_none(reference.get("latency_ms"))
    parts = [f"teacher {reference.get('source', '?')}",
             f"accuracy {acc:.4f}" if acc is not None else "accuracy n/a",
             f"latency {lat:.4f} ms" if lat is not None
             else f"latency n/a ({reference.get('latency_error', 'not measured')})"]
    params = number_or_none(reference.get("params"))
    if params is not None:
        parts.append(f"{int(params):,} parameters")
    return ", ".join(parts)
