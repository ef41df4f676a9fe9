"""The Optuna objective: sample a candidate, evaluate it for real, record it all with the trial."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch

from edgeshrink.core.metrics import DEFAULT_OBJECTIVES
from edgeshrink.evaluators.data.splits import DataSplits
from edgeshrink.evaluators.pipeline import evaluate_candidate
from edgeshrink.evaluators.supernet import SuperNet
from edgeshrink.evaluators.teacher.builtin import Teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.gauge import Gauge
from edgeshrink.hardware_profiles.int8_arithmetic import int8_arithmetic
from edgeshrink.hardware_profiles.registry import Profile
from edgeshrink.search.early_stop import EarlyStopRule, TrialWatcher
from edgeshrink.search.objective_values import objective_values
from edgeshrink.search.suggest import suggest_any
from edgeshrink.spaces.base_model.space import BaseSpace
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.families import family_of
from edgeshrink.spaces.space import SearchSpace


@dataclass
class Objective:
    space: SearchSpace
    data: DataSplits
    teacher: Teacher
    profile: Profile
    trials_dir: Path
    settings: TrainSettings
    seed: int = 0
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    gauge: Gauge | None = None
    early_stop: EarlyStopRule | None = None  # None trains every candidate to the end
    # Tiny students on a shared CPU: one thread avoids OpenMP stalls (10x slower under load,
    # BENCHMARKS.md); None keeps torch's setting.
    train_threads: int | None = None
    # The values returned, in this order (core/metrics.py); accuracy and latency first.
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    supernet: SuperNet | None = None  # weight sharing: students inherit its weights
    base_space: BaseSpace | None = None  # --model: what is searched for the user's own model
    families: tuple[str, ...] = ("student",)  # spaces.families.FAMILIES searched

    @property
    def wants_preview(self) -> bool:
        """Preview the latency before training where it is cheap (a predicted profile reads the
        graph) or saves whole trials (a latency limit). On a measured profile it costs one
        more timing per trial, 0.37 s of a 2.5 s host trial, and aborted nothing in
        benchmarks/trial_throughput.py, so it is left out there."""
        return self.profile.latency_method == "predicted" or self.max_latency_ms is not None

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        candidate = suggest_any(trial, self.space, self.base_space, self.families)
        student = isinstance(candidate, Candidate)
        if "int8" in {candidate.precision, *candidate.stage_precisions}:
            # Not sampled: the host's int8 kernels decide whether weights need 7 bits.
            candidate = replace(candidate,
                                reduce_range=int8_arithmetic(self.profile).reduce_range)
        trial.set_user_attr("arch", candidate.arch)
        trial.set_user_attr("candidate", candidate.to_dict())
        trial.set_user_attr("profile", self.profile.name)
        trial.set_user_attr("family", family_of(candidate))
        if self.train_threads is not None:
            torch.set_num_threads(self.train_threads)
        watch: dict[str, Any] = {}
        if self.early_stop is not None and student:
            watcher = TrialWatcher(trial, candidate, self.early_stop, self.min_accuracy,
                                   self.max_latency_ms)
            watch = {"on_epoch": watcher}
            if self.wants_preview:
                watch["on_preview"] = watcher.on_preview
        sharing = {} if self.supernet is None or not student else {"supernet": self.supernet}
        if sharing:
            trial.set_user_attr("weight_sharing", True)
        try:
            result = evaluate_candidate(
                candidate,
                self.data,
                self.teacher,
                self.profile,
                self.trials_dir / f"{trial.number:05d}",
                self.settings,
                seed=self.seed + trial.number,
                gauge=self.gauge,
                **watch,
                **sharing,
            )
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
        for key, value in result.to_dict().items():
            trial.set_user_attr(key, value)
        # Real constraints, not penalties: the objectives stay honest and the samplers know.
        if self.max_latency_ms is not None:
            trial.set_constraint("max_latency_ms", result.latency_ms - self.max_latency_ms)
        if self.min_accuracy is not None:
            trial.set_constraint("min_accuracy", self.min_accuracy - result.accuracy)
        if result.memory_overflow is not None:  # the device has tight RAM or storage
            trial.set_constraint("fits_memory", result.memory_overflow)
        return objective_values(self.objectives, result)
