"""``edgeshrink search``: prepare data and teacher once, run the study (the report is written
above this layer, by ``reports.writer.search_and_report``)."""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.metrics import parse_objectives
from edgeshrink.evaluators.augment import default_augment
from edgeshrink.evaluators.base_model import check_base_model
from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.device import autocast_dtype, describe_device, resolve_device
from edgeshrink.evaluators.supernet import SupernetSettings, train_supernet
from edgeshrink.evaluators.teacher.load import (
    describe_teacher,
    load_teacher,
    parse_teacher,
    teacher_spec_of_model,
)
from edgeshrink.evaluators.teacher.reference import reference_text, teacher_reference
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.int8_arithmetic import int8_arithmetic
from edgeshrink.hardware_profiles.measure import prepare_gauge
from edgeshrink.hardware_profiles.registry import Profile, load_profile
from edgeshrink.search.early_stop import EarlyStopRule
from edgeshrink.search.objective_values import check_available
from edgeshrink.search.options import (  # SearchOptions: re-exported
    SearchOptions,
    families_of,
    validate,
)
from edgeshrink.search.samplers import make_sampler
from edgeshrink.search.stale import fail_stale_trials
from edgeshrink.search.study import create_or_resume_study, mask_url, resolve_run_dir
from edgeshrink.search.trial import Objective
from edgeshrink.search.workers import (
    DONE_STATES,
    OPTIONS_ATTR,
    extra_workers,
    preparation_lock,
    shared_options,
    work_until,
    worker_seed,
)
from edgeshrink.spaces.base_model.space import load_base_space
from edgeshrink.spaces.base_model.spec import parse_model_spec
from edgeshrink.spaces.space import load_space


def _check_same_setup(study: optuna.Study, setup: dict) -> None:
    """A resumed study must keep the data, space and profile it was started with."""
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", setup)
        return
    keys = ("dataset", "space", "profile", "settings", "teacher", "model", "families")
    changed = [k for k in keys if stored.get(k) != setup[k]]
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
    run_dir = resolve_run_dir(opts.study, opts.run_dir)
    space = load_space(opts.space)
    profile = load_profile(opts.profile)
    objectives = parse_objectives(opts.objectives)
    check_available(objectives, profile)
    declared = space.distributions["precision"].choices
    space = space.with_precisions(profile.precisions)
    dropped = [p for p in declared if p not in profile.precisions]
    if dropped:
        print(f"profile {profile.name!r} cannot run {', '.join(dropped)}: not sampled")
    if opts.resolution is not None:
        space = replace(space, input_resolution=opts.resolution)
    families = families_of(opts)
    data_spec = DataSpec.parse(opts.dataset, opts.data_dir, opts.download)
    device = resolve_device(opts.device, opts.worker or 0)  # before anything is written
    settings = TrainSettings.for_batch(
        opts.batch_size, epochs=opts.epochs, finetune_epochs=opts.finetune_epochs,
        channels_last=opts.channels_last, device=device, loader_workers=opts.loader_workers,
        augment=opts.augment or default_augment(data_spec.name))
    model_spec = parse_model_spec(opts.model) if opts.model else None
    teacher_spec = parse_teacher(opts.teacher)
    if teacher_spec is None and model_spec is not None:
        teacher_spec = teacher_spec_of_model(model_spec)  # self-distillation
    data = load_data(data_spec, space.input_resolution, run_dir / "data")
    base_space = None
    if model_spec is not None:
        # Rebuilt once here, so a wrong state dict, factory or class count stops the search
        # before any study, teacher or trial is written.
        check_base_model(model_spec, data)
        base_space = load_base_space(model_spec, space, profile.sparsity_support)

    # Seed the sampler past the trials already run, so a resumed study does not replay them.
    probe = create_or_resume_study(opts.study, run_dir, opts.storage,
                                   optuna.samplers.RandomSampler(), objectives)
    already = len(probe.trials)
    sampler = make_sampler(opts.sampler, worker_seed(opts.seed, opts.worker or 0, already),
                           opts.trials)
    study = create_or_resume_study(opts.study, run_dir, opts.storage, sampler, objectives)
    setup = {
        "dataset": data_spec.label,
        "data_dir": data_spec.data_dir,
        "teacher": teacher_spec.label if teacher_spec else None,
        "model": model_spec.label if model_spec else None,
        "families": list(families),
        "space": json.loads(json.dumps(asdict(space), default=list)),
        "profile": profile.name,
        "settings": settings.recorded(),
        "seed": opts.seed,
        "cpu": int8_arithmetic(profile).cpu.to_dict(),  # the first scoring machine
    }
    _check_same_setup(study, setup)
    if opts.worker is None:
        study.set_user_attr(OPTIONS_ATTR, shared_options(opts))  # for workers that join
    interrupted = fail_stale_trials(study)
    if interrupted:
        print(f"trial(s) {interrupted} were interrupted (their worker is gone): marked FAIL, "
              "their parameters queued once more")

    if base_space is not None and "base" in families and opts.worker is None and not study.trials:
        # The uncompressed model, measured as fp32, is trial 0: the reference on every plot.
        family = {"family": "base"} if len(families) > 1 else {}
        study.enqueue_trial({**family, **base_space.reference()},
                            user_attrs={"reference": "base"})
    done = sum(t.state in DONE_STATES for t in study.trials)
    remaining = opts.trials - done
    where = mask_url(opts.storage) if opts.storage else str(run_dir)
    if remaining <= 0:
        print(f"study {opts.study!r} already has {done} completed trials (asked {opts.trials}); "
              "writing the report.")
    else:
        start = time.perf_counter()
        with preparation_lock(run_dir):  # concurrent first starts train the teacher once
            teacher = load_teacher(teacher_spec, data, run_dir / "teacher", seed=opts.seed,
                                   settings=settings)
        print(describe_teacher(teacher, teacher_spec))
        print(_training_text(settings))
        print(
            f"search {opts.study!r} on {data.name} ({len(data.train.y)} train / "
            f"{len(data.val.y)} val images at {data.resolution}x{data.resolution}), profile "
            f"{profile.name!r}, sampler {opts.sampler}: running {remaining} trial(s), "
            f"{done} already done; storage {where}"
        )
        print(_arithmetic_text(profile))
        print(f"ETA: about {remaining * _SECONDS_PER_TRIAL_GUESS * opts.epochs / 5 / 60:.0f} min "
              "(the progress bar refines it)")
        # One gauge latency per study, so every trial, resumed or not, is on the same scale.
        with preparation_lock(run_dir):
            gauge = prepare_gauge(profile, run_dir, data.val.x[:1].numpy(),
                                  study.user_attrs.get("gauge_ms"))
            if gauge is not None and "gauge_ms" not in study.user_attrs:
                study.set_user_attr("gauge_ms", gauge.ms)
                print(f"latency gauge: {gauge.ms:.4f} ms on this host; trial latencies are "
                      "drift-corrected against it")
            if "teacher" not in study.user_attrs:  # the reference point of the report
                reference = teacher_reference(teacher, teacher_spec, data, profile,
                                              run_dir / "teacher", gauge)
                study.set_user_attr("teacher", reference)
                print(f"teacher reference: {reference_text(reference)}")
        supernet = None
        if opts.weight_sharing and "student" in families:  # trained once per run directory
            supernet = train_supernet(space, data, teacher, SupernetSettings(),
                                      run_dir / "supernet", seed=opts.seed, device=device)
            print(f"weight sharing: supernet {'trained' if supernet.trained_now else 'loaded'} "
                  f"({supernet.train_seconds:.0f} s of training)")
        objective = Objective(space, data, teacher, profile, run_dir / "trials", settings,
                              seed=opts.seed, max_latency_ms=opts.max_latency,
                              min_accuracy=opts.min_accuracy, gauge=gauge,
                              early_stop=EarlyStopRule(
                                  sparse_kernels=profile.sparsity_support != "none")
                              if opts.early_stop else None,
                              train_threads=opts.train_threads, objectives=objectives,
                              supernet=supernet, base_space=base_space, families=families)
        progress = _Progress(remaining, opts.progress)
        optuna.logging.set_verbosity(logging.ERROR)
        try:
            with extra_workers(opts, run_dir, remaining):
                work_until(study, objective, opts.trials, max_trials=remaining,
                           timeout=opts.timeout, callbacks=[progress])
        finally:
            progress.close()
        print(f"search finished in {time.perf_counter() - start:.0f} s")
    return study


def _training_text(settings: TrainSettings) -> str:
    where = describe_device(settings.device)
    amp = autocast_dtype(settings.device)
    gpu = f" ({where['gpu']}, {str(amp).removeprefix('torch.')} autocast)" if amp else ""
    return (f"training on {settings.device}{gpu}: batch {settings.batch_size}, learning rate "
            f"{settings.lr:g}, augmentation {settings.augment}")


def _arithmetic_text(profile: Profile) -> str:
    arithmetic = int8_arithmetic(profile)
    cpu = arithmetic.cpu.describe()
    if arithmetic.accuracy_method == "reference":
        return (f"scoring CPU: {cpu}; int8 accuracy is computed in reference arithmetic, as "
                f"{profile.name!r} computes it")
    weights = ("int8 weights are quantized to 7 bits so this host's kernels do not saturate"
               if arithmetic.reduce_range else "int8 weights use 8 bits")
    return f"scoring CPU: {cpu}; {weights}"


# Mean seconds per trial at 5 epochs on 2 quiet cores, default space (BENCHMARKS.md).
_SECONDS_PER_TRIAL_GUESS = 7.0
