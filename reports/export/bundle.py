"""Ship a trial: copy its measured file, prove it still scores what was stored, and write the
recipe, metrics and model card into a directory that appears whole.

``formats`` picks the model files: ``onnx`` (the measured file, the default) and ``tflite``
(LiteRT files converted from the trial's torch model and checked in LiteRT's interpreter,
:mod:`edgeshrink.evaluators.tflite_export`). A format is all or nothing: when any ``.tflite`` of a
trial is rejected by the converter or misses its check, that trial ships none. Asked alone, that
refuses the export (nothing is written); asked with ``onnx``, the ONNX export is still written,
its model card and ``metrics.json`` say why there is no ``.tflite``, and the result carries the
reason (``tflite_refused``) so the command line can still fail with it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from edgeshrink.core.atomic import staged_directory
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.rescore import (
    MODEL_FILE,
    WEIGHTS_FILE,
    ArtifactMismatch,
    artifact_dir,
    rescore_trial,
)
from edgeshrink.evaluators.tflite_export import (
    FORMATS,
    TfliteExport,
    TfliteRefused,
    parse_formats,
)
from edgeshrink.reports.export.model_card import model_card
from edgeshrink.reports.export.pick import ladder_trials, pick_by_number
from edgeshrink.reports.paths import inside
from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.families import candidate_from_dict

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
    tflite_refused: str | None = None  # why no .tflite was written (asked with onnx)

    @property
    def tflite(self) -> list[dict[str, Any]]:
        """The shipped ``.tflite`` files: name, precision, size and accuracies."""
        return list(self.metrics.get("tflite", {}).get("files", []))


def _study_setup(study: optuna.Study) -> dict[str, Any]:
    setup = study.user_attrs.get("setup")
    if not setup:
        raise EdgeshrinkError(f"study {study.study_name!r} was not made by edgeshrink search "
                              "(it has no recorded setup)")
    return setup


def _write_into(stage: Path, study: optuna.Study, trial: FrozenTrial, run_dir: Path | None,
                pick_reason: str, formats: tuple[str, ...] = ("onnx",)) -> ExportResult:
    """Copy, verify and describe one trial's model inside ``stage``."""
    # Heavy imports only when a model is really exported.
    from edgeshrink.evaluators.build import BuildConfig
    from edgeshrink.evaluators.training import TrainSettings

    source = artifact_dir(trial.number, trial.user_attrs.get("artifact"), run_dir)
    setup = _study_setup(study)
    attrs = trial.user_attrs
    candidate = candidate_from_dict(attrs["candidate"])
    files = []
    if "onnx" in formats:
        shutil.copy2(source / MODEL_FILE, stage / MODEL_FILE)
        files.append(MODEL_FILE)
    shutil.copy2(source / WEIGHTS_FILE, stage / WEIGHTS_FILE)
    files.append(WEIGHTS_FILE)
    # The proof is made on the copies that ship (the search's own file where ONNX is not
    # shipped): they score exactly what the search stored.
    try:
        scored = rescore_trial(stage if "onnx" in formats else source, trial.number, attrs,
                               trial.values[0], setup,
                               Path(run_dir) / "data" if run_dir is not None else None)
    except ArtifactMismatch as exc:
        raise EdgeshrinkError(f"{exc}; not exporting it") from None
    data, val_acc, test_acc = scored.data, scored.validation_accuracy, scored.test_accuracy
    settings = TrainSettings(**setup["settings"])
    tflite, refused = None, None
    if "tflite" in formats:
        tflite, refused = _tflite(source, trial.number, candidate, data, val_acc,
                                  settings.calibration_samples, setup["profile"], formats)
        if tflite is not None:
            files += tflite.write(stage)

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
        formats=list(formats),
    )
    if tflite is not None:
        metrics["tflite"] = tflite.record()
    elif refused is not None:
        metrics["tflite"] = {"refused": refused}
    config = BuildConfig(
        candidate=candidate,
        dataset=setup["dataset"],
        training=settings,
        seed=int(setup.get("seed", 0)) + trial.number,
        teacher_seed=int(setup.get("seed", 0)),
        profile=setup["profile"],
        source={"study": study.study_name, "trial": trial.number},
        data_dir=setup.get("data_dir"),
        teacher=setup.get("teacher"),
        pruning_plan=_pruning_plan(source),
        stage_groups=_stage_groups(candidate, attrs.get("channel_groups") or []),
        expected={"validation_accuracy": val_acc, "test_accuracy": test_acc,
                  "latency_ms": attrs.get("latency_ms"), "size_bytes": attrs.get("size_bytes")},
    )
    (stage / "config.yaml").write_text(config.to_yaml())
    (stage / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (stage / "README.md").write_text(model_card(metrics, candidate, data, setup))
    files += ["config.yaml", "metrics.json", "README.md"]
    return ExportResult(trial.number, stage, files, val_acc, test_acc, metrics, refused)


def _tflite(source: Path, number: int, candidate: Any, data: Any, onnx_accuracy: float,
            calibration_samples: int, profile: str,
            formats: tuple[str, ...]) -> tuple[TfliteExport | None, str | None]:
    """The checked ``.tflite`` files, or (None, why) where ONNX ships without them."""
    from edgeshrink.evaluators.litert import ConversionRefused
    from edgeshrink.evaluators.tflite_export import export_tflite

    try:
        return export_tflite(source, candidate, data, onnx_accuracy, calibration_samples,
                             profile), None
    except (ConversionRefused, TfliteRefused) as exc:
        if "onnx" not in formats:
            raise type(exc)(f"no .tflite for trial {number}: {exc}; nothing written") from None
        return None, str(exc)


def _formats(formats: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validated formats, and LiteRT present where asked, before any work is done."""
    if not formats:
        raise EdgeshrinkError(f"choose at least one export format ({', '.join(FORMATS)})")
    chosen = parse_formats(formats if isinstance(formats, str) else ",".join(formats))
    if "tflite" in chosen:
        from edgeshrink.evaluators.litert import require_litert

        require_litert()
    return chosen


def _pruning_plan(source: Path) -> list | None:
    from edgeshrink.evaluators.pipeline import PRUNING_PLAN

    path = source / PRUNING_PLAN
    return json.loads(path.read_text()) if path.is_file() else None


def _stage_groups(candidate: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Base family: each stage group's units, precision and channels kept, for the recipe."""
    if not isinstance(candidate, BaseCandidate):
        return []
    return [{**g, "precision": candidate.precision_of_stage(int(g["group"]))} for g in groups]


def export_trial(study: optuna.Study, trial_number: int, out_dir: Path | str, *,
                 run_dir: Path | None = None, force: bool = False,
                 reason: str | None = None,
                 formats: str | tuple[str, ...] | list[str] = ("onnx",)) -> ExportResult:
    """Export one completed trial into ``out_dir``, atomically; never overwrites unless force."""
    formats = _formats(formats)
    trial = pick_by_number(study, trial_number).trial
    out_dir = Path(out_dir)
    with staged_directory(out_dir, force) as stage:
        result = _write_into(stage, study, trial, run_dir, reason or f"trial {trial_number}",
                             formats)
    return ExportResult(result.trial, out_dir, result.files, result.val_accuracy,
                        result.test_accuracy, result.metrics, result.tflite_refused)


def export_ladder(study: optuna.Study, k: int, out_dir: Path | str, *,
                  run_dir: Path | None = None, force: bool = False,
                  formats: str | tuple[str, ...] | list[str] = ("onnx",)) -> list[ExportResult]:
    """Export K front points plus ``ladder.json`` and the runtime selector, all in one rename.

    Each rung names its model files; ``model`` (what the selector returns) is ``model.onnx``, or
    the int8 (else fp32) ``.tflite`` where ONNX is not shipped."""
    formats = _formats(formats)
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
                            f"rung {rank} of a {len(trials)}-model ladder", formats)
            results.append(ExportResult(r.trial, out_dir / name, r.files, r.val_accuracy,
                                        r.test_accuracy, r.metrics, r.tflite_refused))
            rungs.append({"trial": trial.number, "accuracy": r.val_accuracy,
                          "test_accuracy": r.test_accuracy, "latency_ms": trial.values[1],
                          "size_bytes": trial.user_attrs.get("size_bytes"),
                          **({"energy_mj": trial.user_attrs["energy_mj"]}
                             if "energy_mj" in trial.user_attrs else {}),
                          **_rung_files(name, r)})
        ladder = {"study": study.study_name, "profile": _study_setup(study)["profile"],
                  "rungs": rungs}
        (stage / "ladder.json").write_text(json.dumps(ladder, indent=2) + "\n")
        shutil.copy2(Path(__file__).parents[1] / "selector.py", stage / SELECTOR_FILE)
    return results


def _rung_files(name: str, result: ExportResult) -> dict[str, Any]:
    """A ladder rung's model paths: ``model`` for the selector, ``tflite`` per precision."""
    tflite = {f["precision"]: f"{name}/{f['file']}" for f in result.tflite}
    if MODEL_FILE in result.files:
        model = f"{name}/{MODEL_FILE}"
    else:
        model = tflite.get("int8", tflite.get("fp32"))
    return {"model": model,
            **({"tflite": tflite} if tflite else {}),
            **({"tflite_refused": result.tflite_refused} if result.tflite_refused else {})}
