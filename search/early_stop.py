"""Early abort of hopeless trials: stop distilling a candidate a smaller trial already beats.

Optuna's ``Trial.report``/``should_prune`` and its pruners do not support multi-objective
studies, so the rule is ours. After each distillation epoch the pipeline passes the torch
model's validation accuracy; the trial is aborted (Optuna ``PRUNED``) when even its most
optimistic final accuracy, ``accuracy(epoch) + largest gain any finished trial made after that
epoch + margin``, is below

* the final accuracy of a finished, feasible trial whose network is contained in this one (same
  precision and block types, no wider, no deeper, no larger kernel or expansion), so it is no
  faster on any device and could only end dominated; or
* ``--min-accuracy``, so it could only end infeasible.

Latency is not known before export; containment is what makes "no faster" safe (MACs are not:
a wide depthwise-separable net beats a narrow inverted-residual one with fewer MACs on the Pi
profile). The same containment bounds the other objectives ``--objectives`` may add: a
contained network has no more MACs, weights or activations at the same precision, so no more
energy and no larger file; the rule therefore stays on for 3 and 4 objectives, and it reads only
``values[0]``, which is accuracy in every study. ``benchmarks/sampler_replay.py`` replays the
rule on an enumerated space and counts the true Pareto points it would have aborted. Training
is unchanged by the check, so completed trials measure exactly what they did before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.spaces.candidate import Candidate

CURVE_ATTR = "epoch_accuracy"  # torch validation accuracy after each distillation epoch
ABORT_ATTR = "aborted"  # why and when a trial was stopped early


@dataclass(frozen=True)
class Finished:
    """What the rule needs from one finished, feasible trial."""

    candidate: Candidate
    accuracy: float
    curve: tuple[float, ...]


def no_slower(small: Candidate, big: Candidate, sparse_kernels: bool = False) -> bool:
    """True if ``small``'s network is contained in ``big``'s, so it cannot be slower.

    Precisions must agree stage by stage. Channel pruning removes channels on any device, so
    then both must use it and ``small`` be at least as sparse; with ``sparse_kernels`` (a device
    that skips zeros) the same holds for every pruning method.
    """
    if (small.precision != big.precision or small.width_mult > big.width_mult
            or small.act_symmetric != big.act_symmetric
            or len(small.stages) != len(big.stages)
            or (small.input_resolution, small.stem_channels, small.head_channels)
            != (big.input_resolution, big.stem_channels, big.head_channels)):
        return False
    if any(small.precision_of_stage(i) != big.precision_of_stage(i)
           for i in range(len(small.stages))):
        return False
    removes_work = "channel" in (small.pruning, big.pruning) or sparse_kernels
    if removes_work and (small.pruning != big.pruning or small.sparsity < big.sparsity):
        return False
    return all(
        a.block == b.block and (a.stride, a.channels, a.act) == (b.stride, b.channels, b.act)
        and a.kernel <= b.kernel and a.expansion <= b.expansion and a.depth <= b.depth
        and a.se <= b.se
        for a, b in zip(small.stages, big.stages, strict=True)
    )


@dataclass(frozen=True)
class EarlyStopRule:
    margin: float = 0.02  # added to the largest observed catch-up, for safety
    min_finished: int = 10  # finished trials needed before anything is aborted
    sparse_kernels: bool = False  # the device's latency drops with sparsity

    def max_gain(self, history: Sequence[Finished], epoch: int) -> float | None:
        """Largest final-minus-checkpoint accuracy gain seen after ``epoch``, or None if unknown."""
        gains = [h.accuracy - h.curve[epoch - 1] for h in history if len(h.curve) >= epoch]
        if len(gains) < self.min_finished:
            return None
        return max(gains)

    def reason(self, epoch: int, accuracy: float, candidate: Candidate,
               history: Sequence[Finished], min_accuracy: float | None = None) -> str | None:
        """Why the candidate is hopeless after ``epoch``, or None to keep training."""
        gain = self.max_gain(history, epoch)
        if gain is None:
            return None
        best_case = accuracy + max(gain, 0.0) + self.margin
        if min_accuracy is not None and best_case < min_accuracy:
            return f"at most {best_case:.3f} accuracy reachable, below --min-accuracy"
        beaten = [h for h in history if h.accuracy > best_case
                  and no_slower(h.candidate, candidate, self.sparse_kernels)]
        if beaten:
            best = max(beaten, key=lambda h: h.accuracy)
            return (f"at most {best_case:.3f} accuracy reachable; the smaller "
                    f"{best.candidate.arch} reached {best.accuracy:.3f}")
        return None


def finished_history(trials: Sequence[FrozenTrial]) -> list[Finished]:
    """Completed, feasible trials that recorded a learning curve."""
    out = []
    for t in trials:
        if t.state != TrialState.COMPLETE or CURVE_ATTR not in t.user_attrs:
            continue
        if any(v > 0 for v in t.constraints.values()):
            continue
        out.append(Finished(Candidate.from_dict(t.user_attrs["candidate"]), t.values[0],
                            tuple(t.user_attrs[CURVE_ATTR])))
    return out


def epoch_watcher(trial: optuna.Trial, candidate: Candidate, rule: EarlyStopRule,
                  min_accuracy: float | None = None) -> Callable[[int, float], None]:
    """The ``on_epoch`` callback of one trial: records its curve, raises TrialPruned if hopeless.

    The history is read once, when the trial starts.
    """
    history = finished_history(trial.study.get_trials(deepcopy=False))
    curve: list[float] = []

    def on_epoch(epoch: int, accuracy: float) -> None:
        curve.append(round(accuracy, 6))
        trial.set_user_attr(CURVE_ATTR, curve)
        why = rule.reason(epoch, accuracy, candidate, history, min_accuracy)
        if why is not None:
            trial.set_user_attr(ABORT_ATTR, {"epoch": epoch, "reason": why})
            raise optuna.TrialPruned(f"epoch {epoch}: {why}")

    return on_epoch
