"""Pick a point of a finished study and ship it: the measured artifact, its recipe, its proof.

An export never re-creates the model: it copies the exact quantized file the search measured,
re-checks that it still scores the stored validation accuracy, scores it once on the held-out
test split (never seen by the search), and writes everything to a staging directory that is
renamed into place only when complete, so an interrupted export leaves nothing half-written.

Picking works for any number of objectives (``--objectives``); values[0] is always accuracy and
values[1] latency. The front is the feasible front over all of them. ``--max-latency`` takes the
most accurate trial within the budget, ties going to the lower latency, then to the lower value of
each further objective (so the pick is on the front). ``--knee`` generalizes the chord rule, see
:func:`knee_point`. ``--ladder`` keeps only front points that no other front point beats on both
accuracy and latency, because its runtime selector chooses by latency alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.core.atomic import atomic_directory
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu
from edgeshrink.hardware_profiles.int8_arithmetic import ACCURACY_METHODS, weight_range_text
from edgeshrink.reports.frame import pareto_mask
from edgeshrink.reports.paths import inside
from edgeshrink.spaces.candidate import Candidate

SELECTOR_FILE = "select_model.py"  # not select.py: that would shadow the standard library
_STORED_METRICS = ("accuracy", "latency_ms", "latency_p90_ms", "latency_raw_ms", "gauge_ratio",
                   "energy_mj", "size_bytes", "size_gzip_bytes",
                   "params", "nonzero_params", "macs", "weight_sparsity", "threads", "profile",
                   "arch", "versions", "accuracy_method", "cpu", "quantization")


@dataclass(frozen=True)
class Pick:
    trial: FrozenTrial
    reason: str


@dataclass(frozen=True)
class ExportResult:
    trial: int
    out_dir: Path
    files: list[str]
    val_accuracy: float
    test_accuracy: float
    metrics: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- picking a point


def _eligible(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials that meet the study's constraints: the only ones a front may hold."""
    return [
        t for t in study.trials
        if t.state == TrialState.COMPLETE and all(c <= 0.0 for c in t.constraints.values())
    ]


def _maximize(study: optuna.Study) -> list[bool]:
    return [d == StudyDirection.MAXIMIZE for d in study.directions]


def _loss_key(study: optuna.Study, t: FrozenTrial) -> tuple[float, ...]:
    """Every value turned into lower-is-better: accuracy first, then latency and the rest."""
    return tuple(-v if up else v for v, up in zip(t.values, _maximize(study), strict=True))


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible front over all the study's objectives, fastest first."""
    trials = _eligible(study)
    if not trials:
        return []
    mask = pareto_mask([t.values for t in trials], _maximize(study))
    return sorted((t for t, m in zip(trials, mask, strict=True) if m),
                  key=lambda t: (t.values[1], -t.values[0]))


def _describe(t: FrozenTrial) -> str:
    return f"trial {t.number} (accuracy {t.values[0]:.4f}, {t.values[1]:.4f} ms)"


def pick_by_number(study: optuna.Study, number: int) -> Pick:
    if isinstance(number, bool) or not isinstance(number, int):
        raise EdgeshrinkError(f"a trial number is a whole number, got {number!r}")
    by_number = {t.number: t for t in study.trials}
    if number not in by_number:
        last = max(by_number, default=-1)
        raise EdgeshrinkError(
            f"study {study.study_name!r} has no trial {number} (trials are 0..{last})"
        )
    t = by_number[number]
    if t.state != TrialState.COMPLETE:
        why = t.user_attrs.get("error") or t.system_attrs.get("fail_reason") or ""
        raise EdgeshrinkError(
            f"trial {number} is {t.state.name}, not COMPLETE; nothing to export"
            + (f" ({why})" if why else "") + "; pick a COMPLETE trial (see `edgeshrink report`)"
        )
    return Pick(t, f"trial {number}, chosen by number")


def pick_under_latency(study: optuna.Study, budget_ms: float) -> Pick:
    """Most accurate feasible trial within the budget; if none, the error names the closest."""
    if not budget_ms > 0:
        raise EdgeshrinkError(f"--max-latency must be positive milliseconds, got {budget_ms}")
    trials = _eligible(study)
    if not trials:
        raise EdgeshrinkError(f"study {study.study_name!r} has no completed feasible trials yet")
    fitting = [t for t in trials if t.values[1] <= budget_ms]
    if not fitting:
        # Closest over the budget: the fastest of the front.
        closest = min(trials, key=lambda t: (t.values[1], -t.values[0]))
        raise EdgeshrinkError(
            f"no trial meets {budget_ms:g} ms; the closest is {_describe(closest)}: "
            f"export it with --trial {closest.number} or raise --max-latency"
        )
    best = min(fitting, key=lambda t: _loss_key(study, t))
    return Pick(best, f"most accurate within {budget_ms:g} ms")


def knee_point(points: np.ndarray, maximize: list[bool] | tuple[bool, ...]) -> int:
    """Index of the knee of a front of any number of objectives.

    Each objective is scaled to a loss in [0, 1] over the front (0 = the front's best), so units
    do not matter. The reference hyperplane passes through the extreme points, the best point on
    each objective (ties to the lowest sum of the other losses); for two objectives it is the
    chord between the front's ends. Where the extremes are fewer than the objectives (the
    fastest point is also the most frugal), the plane is the least-squares one through them
    (minimum-norm ``w`` with ``w . e = 1``), which weighs the objectives they share equally. The
    knee is the point farthest beyond that plane towards the ideal corner. When no point lies
    beyond it (fewer than three points, or a concave front), the point closest to the ideal
    corner is taken instead, ties going to the more accurate (first objective).
    """
    pts = np.asarray(points, dtype=float).reshape(-1, len(maximize))
    loss = np.where(np.asarray(maximize, dtype=bool), -pts, pts)
    span = loss.max(axis=0) - loss.min(axis=0)
    scaled = np.where(span > 0, (loss - loss.min(axis=0)) / np.where(span > 0, span, 1.0), 0.0)
    rest = scaled.sum(axis=1, keepdims=True) - scaled
    extremes = np.unique(scaled[[int(np.lexsort((rest[:, j], scaled[:, j]))[0])
                                 for j in range(scaled.shape[1])]], axis=0)
    w = np.linalg.pinv(extremes) @ np.ones(len(extremes))
    norm = float(np.linalg.norm(w))
    if len(pts) >= 3 and norm > 0:
        rise = (1.0 - scaled @ w) / norm  # signed distance; positive = towards the ideal corner
        if rise.max() > 1e-12:
            return int(np.argmax(rise))
    return int(np.lexsort((scaled[:, 0], np.round(np.linalg.norm(scaled, axis=1), 12)))[0])


def knee_index(accuracy: np.ndarray, latency: np.ndarray) -> int:
    """Knee of an (accuracy, latency) front: the point farthest above the chord between its ends.

    With fewer than three points or no point above the chord, the point closest to the ideal
    corner (best accuracy, lowest latency); for two points that is a tie, which goes to the more
    accurate one. :func:`knee_point` with two objectives.
    """
    return knee_point(np.column_stack([accuracy, latency]), (True, False))


def pick_knee(study: optuna.Study) -> Pick:
    front = pareto_trials(study)
    if not front:
        raise EdgeshrinkError(f"study {study.study_name!r} has no completed feasible trials yet")
    i = knee_point(np.array([t.values for t in front]), _maximize(study))
    return Pick(front[i], f"knee of the {len(front)}-point front")


def ladder_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """K front points spread evenly over the front's latency range (log scale), fastest first."""
    if k < 1:
        raise EdgeshrinkError(f"--ladder must be at least 1, got {k}")
    front = pareto_trials(study)
    if not front:
        raise EdgeshrinkError(f"study {study.study_name!r} has no completed feasible trials yet")
    if len(study.directions) > 2:  # the selector picks by latency: drop what it never would
        keep = pareto_mask([t.values[:2] for t in front])
        front = [t for t, m in zip(front, keep, strict=True) if m]
    if len(front) <= k:
        return front
    log_lat = np.log([t.values[1] for t in front])
    targets = np.linspace(log_lat[0], log_lat[-1], k)
    chosen: list[int] = []
    for target in targets:
        order = np.argsort(np.abs(log_lat - target), kind="stable")
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return [front[i] for i in sorted(chosen)]


# ---------------------------------------------------------------- writing an export


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
    from edgeshrink.evaluators.datasets import load_data, spec_from_setup
    from edgeshrink.evaluators.onnx_eval import onnx_predict
    from edgeshrink.evaluators.training import TrainSettings
    from edgeshrink.spaces.blocks import build_student
    from edgeshrink.spaces.pruned_state import load_pruned_state_dict

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
        shutil.copy2(Path(__file__).with_name("selector.py"), stage / SELECTOR_FILE)
    return results


def model_card(metrics: dict[str, Any], candidate: Candidate, data: Any,
               setup: dict[str, Any]) -> str:
    """A short README for the exported model: what it is, how it was found, how to run it."""
    res = candidate.input_resolution
    teacher = f"your teacher `{setup['teacher']}`" if setup.get("teacher") else "a larger CNN"
    rows = [
        ("validation accuracy (search)", f"{metrics['validation_accuracy']:.4f} "
                                         f"({metrics['validation_images']} images)"),
        ("test accuracy (held out)", f"{metrics['test_accuracy']:.4f} "
                                     f"({metrics['test_images']} images)"),
        ("latency, median / p90", f"{metrics.get('latency_ms', float('nan')):.4f} / "
                                  f"{metrics.get('latency_p90_ms', float('nan')):.4f} ms on "
                                  f"profile `{setup['profile']}`, batch 1, "
                                  f"{metrics.get('threads', 1)} thread(s)"),
        *([("energy per inference", f"{metrics['energy_mj']:.4g} mJ (predicted)")]
          if metrics.get("energy_mj") is not None else []),
        ("file size", f"{metrics.get('size_bytes', 0):,} bytes "
                      f"({metrics.get('size_gzip_bytes', 0):,} gzipped)"),
        ("parameters (non-zero)", f"{metrics.get('params', 0):,} "
                                  f"({metrics.get('nonzero_params', 0):,})"),
        ("MACs per image", f"{metrics.get('macs', 0):,}"),
    ]
    if "int8" in metrics.get("quantization", {}).get("realised", {}):
        rows.append(("int8 weights", weight_range_text(candidate.reduce_range)))
    if metrics.get("accuracy_method"):
        cpu = metrics.get("cpu") or {}
        rows.append(("accuracy computed by", f"{ACCURACY_METHODS[metrics['accuracy_method']]}"
                     + (f", on {cpu.get('model', '?')}" if cpu else "")))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""# {data.name} classifier, trial {metrics['trial']} of study `{metrics['study']}`

A {candidate.precision} MobileNet-style network, `{candidate.arch}`, found by edgeshrink
(picked: {metrics['picked']}). It was distilled from {teacher} (temperature
{candidate.temperature:g}, alpha {candidate.alpha:g}{_hint_text(candidate)}),
{_pruning_text(candidate)}, and exported to ONNX {_precision_text(candidate)}.
`model.onnx` is the exact file whose accuracy and latency were measured.

| metric | value |
|---|---|
{table}

## Run it with onnxruntime

Input: float32 `[batch, {data.in_channels}, {res}, {res}]`; output: `[batch, {data.num_classes}]`
logits. Preprocess each image as `(pixel / {data.pixel_scale:g} - {data.mean:.6f}) /
{data.std:.6f}`, resized bilinearly to {res}x{res}.

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
x = np.zeros((1, {data.in_channels}, {res}, {res}), np.float32)  # your preprocessed images
logits = session.run(None, {{session.get_inputs()[0].name: x}})[0]
print(logits.argmax(axis=1))
```

## Files

- `model.onnx`: the deployable model. `weights.pt`: the PyTorch state dict
  (`torch.load("weights.pt", weights_only=True)`), before quantization; after channel pruning
  load it with `edgeshrink.spaces.pruned_state.load_pruned_state_dict(build_student(...), state)`.
- `config.yaml`: every choice; `edgeshrink build config.yaml --out DIR` retrains it from scratch.
- `metrics.json`: all metrics, tool versions and where it came from.
"""


def _cpu_hint(method: str, cpu: dict[str, Any] | None) -> str:
    """Host arithmetic differs between CPUs: name the one that scored the trial if it differs."""
    if method != "host" or not cpu or CpuInfo.from_dict(cpu).same_kind(host_cpu()):
        return ""
    return (f" (it was scored on {cpu.get('model', '?')}, this is {host_cpu().model}: "
            "export on a machine of the same kind)")


_PRUNING_TEXT = {
    "global_magnitude": "magnitude-pruned to {s:.0%} of its weights (one global threshold)",
    "layer_magnitude": "magnitude-pruned to {s:.0%} of the weights of every layer",
    "channel": "channel-pruned ({s:.0%} of the channels removed, {i} importance)",
    "semi_2_4": "pruned to the 2:4 semi-structured pattern (2 of every 4 weights zero)",
}


def _pruning_text(candidate: Candidate) -> str:
    if candidate.sparsity == 0 and candidate.pruning != "semi_2_4":
        return "not pruned"
    return _PRUNING_TEXT[candidate.pruning].format(s=candidate.sparsity, i=candidate.importance)


def _precision_text(candidate: Candidate) -> str:
    stages = candidate.stage_precisions
    if not stages or set(stages) == {candidate.precision}:
        kind = candidate.precision
    else:
        kind = f"mixed precision (stages {', '.join(stages)}; stem and head {candidate.precision})"
    extra = []
    if {candidate.precision, *stages} & {"int8", "int4"}:
        extra.append("symmetric" if candidate.act_symmetric else "asymmetric")
        extra[-1] += " int8 activations"
        if candidate.qat:
            extra.append("quantization-aware fine-tuning")
    return f"at {kind}" + (f" ({', '.join(extra)})" if extra else "")


def _hint_text(candidate: Candidate) -> str:
    return f", feature hints weight {candidate.hint_weight:.2f}" if candidate.hint_weight else ""

