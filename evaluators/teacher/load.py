"""Which teacher a student is distilled from: one trained here (the default) or the user's own.

``--teacher`` takes a TorchScript file, an ONNX file (run by onnxruntime: only its logits are
needed), or ``ARCH:WEIGHTS``, a torchvision architecture plus a state dict read with
``torch.load(weights_only=True)``. The teacher sees the same normalised images as the students.
Its logits on the training images are computed once and cached next to the run; its own
validation accuracy and latency are the reference point the report compares every trial with.
"""

from __future__ import annotations

import hashlib
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeshrink.core.atomic import atomic_path
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.teacher.builtin import Teacher, load_or_train_teacher
from edgeshrink.evaluators.training import TrainSettings, predict_logits
from edgeshrink.spaces.base_model.load import GreyToRGB, build_model, first_line, fit_input
from edgeshrink.spaces.base_model.spec import ModelSpec, parse_model_spec, torchvision_archs

__all__ = ["TRAINED_HERE", "GreyToRGB", "TeacherSpec", "describe_teacher", "first_line",
           "load_teacher", "parse_teacher", "teacher_spec_of_model"]

TRAINED_HERE = "trained here (TeacherCNN)"


@dataclass(frozen=True)
class TeacherSpec:
    form: str  # registry key of TEACHER_FORMS
    path: str  # absolute; "" for a factory that loads its own weights
    arch: str | None = None  # torchvision architecture, or "module:factory" for "factory"

    @property
    def label(self) -> str:
        """The ``--teacher`` value that names this teacher again: stored with the study."""
        return ":".join(part for part in (self.arch, self.path) if part)


def teacher_spec_of_model(spec: ModelSpec) -> TeacherSpec:
    """``--model`` as the teacher of every candidate when no ``--teacher`` is given."""
    head = spec.arch if spec.form == "torchvision" else spec.factory
    return TeacherSpec(spec.form, spec.weights or "", head)


def _existing(path: str, what: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise EdgeshrinkError(f"{what} not found: {p}")
    return str(p.resolve())


def parse_teacher(text: str | None) -> TeacherSpec | None:
    """None means: train the default teacher. A TorchScript file is a zip; ONNX is not."""
    if not text:
        return None
    arch, sep, weights = text.partition(":")
    if sep and not Path(text).exists() and "." in arch:  # module.path:factory[:WEIGHTS]
        return teacher_spec_of_model(parse_model_spec(text, "--teacher"))
    if sep and not Path(text).exists():
        if arch not in torchvision_archs():
            raise EdgeshrinkError(
                f"--teacher {text!r}: {arch!r} is not a torchvision classification architecture "
                "(see torchvision.models.list_models()); write e.g. resnet18:weights.pt"
            )
        return TeacherSpec("torchvision", _existing(weights, "teacher state dict"), arch)
    path = _existing(text, "teacher file")
    return TeacherSpec("torchscript" if zipfile.is_zipfile(path) else "onnx", path)


# ---------------------------------------------------------------- the three forms


class OnnxTeacher(nn.Module):
    """An ONNX classifier behind nn.Module's call, run by onnxruntime on one thread (exact)."""

    def __init__(self, path: str):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().numpy().astype(np.float32)
        step = self.fixed_batch or max(len(arr), 1)
        outs = []
        for i in range(0, len(arr), step):
            chunk = arr[i : i + step]
            pad = step - len(chunk)  # a fixed batch size: pad the last chunk, drop the padding
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
            out = self.session.run(None, {self.input_name: chunk})[0]
            outs.append(out[: len(out) - pad])
        return torch.from_numpy(np.concatenate(outs))


def _load_torchscript(spec: TeacherSpec, data: DataSplits) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            return torch.jit.load(spec.path, map_location="cpu")
    except RuntimeError as exc:
        raise EdgeshrinkError(
            f"{spec.path} is not a TorchScript file ({first_line(exc)[:120]}); for a state "
            f"dict pass ARCH:{spec.path}, e.g. resnet18:{spec.path}"
        ) from None


def _load_onnx(spec: TeacherSpec, data: DataSplits) -> nn.Module:
    try:
        return OnnxTeacher(spec.path)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise EdgeshrinkError(f"cannot load ONNX teacher {spec.path}: {first_line(exc)}") from None


def _load_torchvision(spec: TeacherSpec, data: DataSplits) -> nn.Module:
    model_spec = ModelSpec("torchvision", spec.path, arch=spec.arch)
    return build_model(model_spec, data.num_classes, what="teacher")


def _load_factory(spec: TeacherSpec, data: DataSplits) -> nn.Module:
    """A ``--model module:factory[:WEIGHTS]`` used as its own teacher (self-distillation)."""
    model_spec = ModelSpec("factory", spec.path or None, factory=spec.arch)
    return build_model(model_spec, data.num_classes, what="teacher")


TEACHER_FORMS: dict[str, Callable[[TeacherSpec, DataSplits], nn.Module]] = {
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
    "torchvision": _load_torchvision,
    "factory": _load_factory,
}


def _fit_input(model: nn.Module, data: DataSplits, label: str) -> nn.Module:
    """Check the teacher runs on the data's images and returns one logit per class."""
    return fit_input(model, data.train.x[:2], data.num_classes, label, what="teacher")


# ---------------------------------------------------------------- loading, with cached logits


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_teacher(spec: TeacherSpec | None, data: DataSplits, cache_dir: Path,
                 seed: int = 0, settings: TrainSettings | None = None) -> Teacher:
    """The teacher with its training-set logits, from ``cache_dir`` when they are there.

    A file lock serialises concurrent first starts, so the work is done once.
    """
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / ".teacher.lock")):
        if spec is None:
            return load_or_train_teacher(data, cache_dir, seed=seed, settings=settings)
        model = _fit_input(TEACHER_FORMS[spec.form](spec, data), data, spec.label)
        key = hashlib.sha256(
            f"{spec.form}|{spec.arch}|{_file_digest(spec.path) if spec.path else ''}|"
            f"{data.fingerprint()}".encode()
        ).hexdigest()[:16]
        path = cache_dir / f"logits-{key}.pt"
        if path.is_file():
            state = torch.load(path, weights_only=True)
            return Teacher(model, state["train_logits"], state["val_accuracy"], False, 0.0)
        start = time.perf_counter()
        logits = predict_logits(model, data.train.x).float()
        val = predict_logits(model, data.val.x).argmax(1)
        accuracy = float((val == data.val.y).float().mean())
        _atomic_save({"train_logits": logits, "val_accuracy": accuracy}, path)
        return Teacher(model, logits, accuracy, False, time.perf_counter() - start)


def describe_teacher(teacher: Teacher, spec: TeacherSpec | None) -> str:
    if spec is None:
        how = (f"trained in {teacher.seconds:.0f} s" if teacher.trained_now
               else "loaded from cache")
    else:
        how = spec.label + (f", logits computed in {teacher.seconds:.1f} s" if teacher.seconds
                            else ", logits loaded from cache")
    return f"teacher: validation accuracy {teacher.val_accuracy:.4f} ({how})"
