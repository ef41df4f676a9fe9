"""Ship a trial: copy its measured file, prove it still scores what was stored, and write the
recipe, metrics and model card into a directory that appears whole."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from edgeshrink.core.atomic import atomic_directory
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu
from edgeshrink.reports.export.model_card import model_card
from edgeshrink.reports.export.pick import ladder_trials, pick_by_number
from edgeshrink.reports.paths import inside
from edgeshrink.spaces.candidate import Candidate

SELECTOR_FILE = "select_model.py"  # not select.py: that would shadow the standard library
_STORED_METRICS = ("accuracy", "latency_ms", "latency_p90_ms", "latency_raw_ms", "gauge_ratio",
                   "energy_mj", "size_bytes", "size_gzip_bytes",
                   "params", "nonzero_params", "macs", "weight_sparsity", "threads", "profile",
                   "arch", "versions", "accuracy_method", "cpu", "quantization")


@dataclass(frozen=True)
class ExportResult:
    trial: int
    out_dir: Path
    files: list[str]
    val_accuracy: float
    test_accuracy: float
    metrics: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def staged_directory(out_dir: Path, force: bool) -> Iterator[Path]:
    """Yield an empty sibling directory; on success it replaces ``out_dir`` in one rename."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeshrinkError(f"--out {out_dir} is a file, not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise EdgeshrinkError(f"{out_dir} already exists and is not empty; pass --force to "
                              "replace it")
    with contextlib.ExitStack() as stack:
        try:
            stage = stack.enter_context(atomic_directory(out_dir))
        except OSError as exc:
            raise EdgeshrinkError(f"cannot write into {out_dir.parent}: {exc.strerror}; choose "
                                  "a writable --out") from None
        yield stage


def _artifact_dir(trial: FrozenTrial, run_dir: Path | None) -> Path:
    stored = trial.user_attrs.get("artifact")
    candidates = [Path(stored).parent] if stored else []
    if run_dir is not None:
        candidates.append(Path(run_dir) / "trials" / f"{trial.number:05d}")
    for d in candidates:
        if (d / "model.onnx").is_file():
            return d
    raise EdgeshrinkError(
        f"the artifact of trial {trial.number} is missing (looked in "
        f"{', '.join(str(d) for d in candidates) or 'nowhere: no artifact recorded'}); "
        "pass the --run-dir of the search that made it"
    )


def _study_setup(study: optuna.Study) -> dict[str, Any]:
    setup = study.user_attrs.get("setup")
    if not setup:
        raise EdgeshrinkError(f"study {study.study_name!r} was not made by edgeshrink search "
                              "(it has no recorded setup)")
    return setup


def _write_into(stage: Path, study: optuna.Study, trial: FrozenTrial, run_dir: Path | None,
                pick_reason: str) -> ExportResult:
    """Copy, verify and describe one trial's model inside ``stage``."""
    # Heavy imports only when a model is really exported.
    import torch

    from edgeshrink.evaluators.build import BuildConfig
    from edgeshrink.evaluators.data.sources import load_data, spec_from_setup
    from edgeshrink.evaluators.onnx_eval import onnx_predict
    from edgeshrink.evaluators.training import TrainSettings
    from edgeshrink.spaces.blocks import build_student
    from edgeshrink.spaces.pruning.state import load_pruned_state_dict

    source = _artifact_dir(trial, run_dir)
    setup = _study_setup(study)
    attrs = trial.user_attrs
    candidate = Candidate.from_dict(attrs["candidate"])
    cache = Path(run_dir) / "data" if run_dir is not None else None
    data = load_data(spec_from_setup(setup), candidate.input_resolution, cache)

    shutil.copy2(source / "model.onnx", stage / "model.onnx")
    shutil.copy2(source / "weights.pt", stage / "weights.pt")
    files = ["model.onnx", "weights.pt"]

    # Proof 1: the shipped file scores exactly what the search stored, in the same arithmetic
    # (trials from before accuracy_method was recorded were scored by the host's kernels).
    method = attrs.get("accuracy_method", "host")
    val_pred = onnx_predict(stage / "model.onnx", data.val.x.numpy(), method=method)
    val_acc = float((val_pred == data.val.y.numpy()).mean())
    if val_acc != trial.values[0]:
        raise EdgeshrinkError(
            f"trial {trial.number}'s model.onnx scores validation accuracy {val_acc:.6f} "
            f"({method} arithmetic), but the study stored {trial.values[0]:.6f}: the artifact "
            "was changed or is not the one measured"
            + _cpu_hint(method, attrs.get("cpu"))
            + "; not exporting it"
        )
    # Proof 2: the weights load safely and fit the architecture in the recipe.
    state = torch.load(stage / "weights.pt", weights_only=True)
    load_pruned_state_dict(build_student(candidate, data.in_channels, data.num_classes), state)
    # The held-out test split, which the search never sees.
    test_pred = onnx_predict(stage / "model.onnx", data.test.x.numpy(), method=method)
    test_acc = float((test_pred == data.test.y.numpy()).mean())

    metrics = {k: attrs[k] for k in _STORED_METRICS if k in attrs}
    metrics.update(
        trial=trial.number,
        study=study.study_name,
        picked=pick_reason,
        validation_accuracy=val_acc,
        test_accuracy=test_acc,
        validation_images=int(len(data.val.y)),
        test_images=int(len(data.test.y)),
        exported_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    config = BuildConfig(
        candidate=candidate,
        dataset=setup["dataset"],
        training=TrainSettings(**setup["settings"]),
        seed=int(setup.get("seed", 0)) + trial.number,
        teacher_seed=int(setup.get("seed", 0)),
        profile=setup["profile"],
        source={"study": study.study_name, "trial": trial.number},
        data_dir=setup.get("data_dir"),
        teacher=setup.get("teacher"),
        expected={"validation_accuracy": val_acc, "test_accuracy": test_acc,
                  "latency_ms": attrs.get("latency_ms"), "size_bytes": attrs.get("size_bytes")},
    )
    (stage / "config.yaml").write_text(config.to_yaml())
    (stage / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (stage / "README.md").write_text(model_card(metrics, candidate, data, setup))
    files += ["config.yaml", "metrics.json", "README.md"]
    return ExportResult(trial.number, stage, files, val_acc, test_acc, metrics)


def export_trial(study: optuna.Study, trial_number: int, out_dir: Path | str, *,
                 run_dir: Path | None = None, force: bool = False,
                 reason: str | None = None) -> ExportResult:
    """Export one completed trial into ``out_dir``, atomically; never overwrites unless force."""
    trial = pick_by_number(study, trial_number).trial
    out_dir = Path(out_dir)
    with staged_directory(out_dir, force) as stage:
        result = _write_into(stage, study, trial, run_dir, reason or f"trial {trial_number}")
    return ExportResult(result.trial, out_dir, result.files, result.val_accuracy,
                        result.test_accuracy, result.metrics)


def export_ladder(study: optuna.Study, k: int, out_dir: Path | str, *,
                  run_dir: Path | None = None, force: bool = False) -> list[ExportResult]:
    """Export K front points plus ``ladder.json`` and the runtime selector, all in one rename."""
    trials = ladder_trials(study, k)
    out_dir = Path(out_dir)
    results = []
    with staged_directory(out_dir, force) as stage:
        rungs = []
        for rank, trial in enumerate(trials):
            name = f"rung{rank}_trial{trial.number}"
            rung = inside(stage, name)
            rung.mkdir()
            r = _write_into(rung, study, trial, run_dir,
                            f"rung {rank} of a {len(trials)}-model ladder")
            results.append(ExportResult(r.trial, out_dir / name, r.files, r.val_accuracy,
                                        r.test_accuracy, r.metrics))
            rungs.append({"trial": trial.number, "accuracy": r.val_accuracy,
                          "test_accuracy": r.test_accuracy, "latency_ms": trial.values[1],
                          "size_bytes": trial.user_attrs.get("size_bytes"),
                          **({"energy_mj": trial.user_attrs["energy_mj"]}
                             if "energy_mj" in trial.user_attrs else {}),
                          "model": f"{name}/model.onnx"})
        ladder = {"study": study.study_name, "profile": _study_setup(study)["profile"],
                  "rungs": rungs}
        (stage / "ladder.json").write_text(json.dumps(ladder, indent=2) + "\n")
        shutil.copy2(Path(__file__).parents[1] / "selector.py", stage / SELECTOR_FILE)
    return results


def _cpu_hint(method: str, cpu: dict[str, Any] | None) -> str:
    """Host arithmetic differs between CPUs: name the one that scored the trial if it differs."""
    if method != "host" or not cpu or CpuInfo.from_dict(cpu).same_kind(host_cpu()):
        return ""
    return (f" (it was scored on {cpu.get('model', '?')}, this is {host_cpu().model}: "
            "export on a machine of the same kind)")
