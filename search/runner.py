"""``edgeshrink search``: prepare data and teacher once, run the study, write the report."""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.evaluators.data import load_dataset
from edgeshrink.evaluators.teacher import load_or_train_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.measure import prepare_gauge
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.reports.writer import write_report
from edgeshrink.search.objective import Objective
from edgeshrink.search.samplers import make_sampler
from edgeshrink.search.study import create_or_resume_study, mask_url
from edgeshrink.spaces.errors import EdgeshrinkError
from edgeshrink.spaces.space import load_space

DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SearchOptions:
    study: str = "digits"
    run_dir: Path | None = None
    storage: str | None = None
    trials: int = 80
    timeout: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    max_latency: float | None = None
    min_accuracy: float | None = None
    profile: str = "host"
    dataset: str = "digits"
    space: Path | None = None
    epochs: int = TrainSettings.epochs
    finetune_epochs: int = TrainSettings.finetune_epochs
    report: bool = True
    progress: bool = True


def validate(opts: SearchOptions) -> None:
    if opts.trials < 1:
        raise EdgeshrinkError(f"--trials must be at least 1, got {opts.trials}")
    if opts.timeout is not None and opts.timeout <= 0:
        raise EdgeshrinkError(f"--timeout must be positive seconds, got {opts.timeout}")
    if opts.epochs < 1 or opts.finetune_epochs < 0:
        raise EdgeshrinkError("--epochs must be >= 1 and --finetune-epochs >= 0")
    if opts.max_latency is not None and opts.max_latency <= 0:
        raise EdgeshrinkError(
            f"--max-latency must be positive milliseconds, got {opts.max_latency}"
        )
    if opts.min_accuracy is not None and not 0 <= opts.min_accuracy <= 1:
        raise EdgeshrinkError(f"--min-accuracy is a fraction in [0, 1], got {opts.min_accuracy}")


def _check_same_setup(study: optuna.Study, setup: dict) -> None:
    """A resumed study must keep the data, space and profile it was started with."""
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", setup)
        return
    changed = [k for k in ("dataset", "space", "profile", "settings") if stored.get(k) != setup[k]]
    if changed:
        raise EdgeshrinkError(
            f"study {study.study_name!r} was started with a different {', '.join(changed)}; "
            "resume it with the original options or pick a new --study name"
        )


class _Progress:
    """Progress bar with the trials done, the current front size and the best accuracy so far."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="trial", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        front = study.best_trials
        best = max((t.values[0] for t in front), default=float("nan"))
        self.bar.set_postfix(front=len(front), best_acc=f"{best:.4f}")
        if trial.state == TrialState.FAIL:
            self.bar.write(f"trial {trial.number} failed: {trial.user_attrs.get('error', '?')}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_search(opts: SearchOptions) -> optuna.Study:
    validate(opts)
    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    run_dir = opts.run_dir or Path("runs") / opts.study
    space = load_space(opts.space)
    try:
        profile = load_profile(opts.profile)
    except ValueError as exc:
        raise EdgeshrinkError(str(exc)) from None
    declared = space.distributions["precision"].choices
    space = space.with_precisions(profile.precisions)
    dropped = [p for p in declared if p not in profile.precisions]
    if dropped:
        print(f"profile {profile.name!r} cannot run {', '.join(dropped)}: not sampled")
    settings = TrainSettings(epochs=opts.epochs, finetune_epochs=opts.finetune_epochs)
    data = load_dataset(opts.dataset, space.input_resolution)

    # Seed the sampler past the trials already run, so a resumed study does not replay them.
    probe = create_or_resume_study(opts.study, run_dir, opts.storage,
                                   optuna.samplers.RandomSampler())
    already = len(probe.trials)
    sampler = make_sampler(opts.sampler, opts.seed + already, opts.trials)
    study = create_or_resume_study(opts.study, run_dir, opts.storage, sampler)
    setup = {
        "dataset": opts.dataset,
        "space": json.loads(json.dumps(asdict(space), default=list)),
        "profile": profile.name,
        "settings": asdict(settings),
        "seed": opts.seed,
    }
    _check_same_setup(study, setup)

    done = sum(t.state in DONE_STATES for t in study.trials)
    remaining = opts.trials - done
    where = mask_url(opts.storage) if opts.storage else str(run_dir)
    if remaining <= 0:
        print(f"study {opts.study!r} already has {done} completed trials (asked {opts.trials}); "
              "writing the report.")
    else:
        start = time.perf_counter()
        teacher = load_or_train_teacher(data, run_dir / "teacher", seed=opts.seed)
        how = f"trained in {teacher.seconds:.0f} s" if teacher.trained_now else "loaded from cache"
        print(f"teacher: validation accuracy {teacher.val_accuracy:.4f} ({how})")
        print(
            f"search {opts.study!r} on {data.name} ({len(data.train.y)} train / "
            f"{len(data.val.y)} val images at {data.resolution}x{data.resolution}), profile "
            f"{profile.name!r}, sampler {opts.sampler}: running {remaining} trial(s), "
            f"{done} already done; storage {where}"
        )
        print(f"ETA: about {remaining * _SECONDS_PER_TRIAL_GUESS * opts.epochs / 5 / 60:.0f} min "
              "(the progress bar refines it)")
        # One gauge latency per study, so every trial, resumed or not, is on the same scale.
        gauge = prepare_gauge(profile, run_dir, data.val.x[:1].numpy(),
                              study.user_attrs.get("gauge_ms"))
        if gauge is not None and "gauge_ms" not in study.user_attrs:
            study.set_user_attr("gauge_ms", gauge.ms)
            print(f"latency gauge: {gauge.ms:.4f} ms on this host; trial latencies are "
                  "drift-corrected against it")
        objective = Objective(space, data, teacher, profile, run_dir / "trials", settings,
                              seed=opts.seed, max_latency_ms=opts.max_latency,
                              min_accuracy=opts.min_accuracy, gauge=gauge)
        progress = _Progress(remaining, opts.progress)
        optuna.logging.set_verbosity(logging.ERROR)
        try:
            study.optimize(objective, n_trials=remaining, timeout=opts.timeout,
                           callbacks=[progress], catch=(Exception,))
        finally:
            progress.close()
        print(f"search finished in {time.perf_counter() - start:.0f} s")
    if opts.report:
        paths = write_report(study, run_dir)
        print(f"report: {paths['html']}\ntrials: {paths['trials']}\npareto: {paths['pareto']}")
    return study


# Mean seconds per trial at 5 epochs on 2 quiet cores, default space (BENCHMARKS.md).
_SECONDS_PER_TRIAL_GUESS = 7.0
