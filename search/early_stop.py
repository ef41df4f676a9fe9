"""Early abort of hopeless trials: stop distilling a candidate a faster trial already beats.

Optuna's ``Trial.report``/``should_prune`` and its pruners do not support multi-objective
studies, so the rule is ours. After each distillation epoch the pipeline passes the torch
model's validation accuracy; the trial is aborted (Optuna ``PRUNED``) when even its most
optimistic final accuracy, ``accuracy(epoch) + largest gain any finished trial made after that
epoch + margin``, is below

* the final accuracy of a finished, feasible trial that is no slower, so the candidate could
  only end dominated; or
* ``--min-accuracy``, so it could only end infeasible.

A finished trial is "no slower" in two ways:

* its network is contained in this one (same precision and block types, no wider, no deeper,
  no larger kernel or expansion), so it is no faster on any device (MACs are not a safe proxy:
  a wide depthwise-separable net beats a narrow inverted-residual one with fewer MACs on the Pi
  profile); or
* its latency (``values[1]``) is at most the candidate's *preview* latency divided by
  ``1 + tolerance``. A latency does not depend on the weights, so the pipeline takes it from the
  untrained, pruned, quantized student before training (``evaluators/latency_preview.py``):
  exact on predicted profiles (tolerance 0), within timing noise on measured ones
  (:data:`LATENCY_TOLERANCE`). The same preview aborts a trial before any training when it
  exceeds ``--max-latency-ms`` beyond the tolerance: it could only end infeasible.

The latency way fires far more often, and that exposes the weak point of the optimistic bound:
the largest gain seen is an empirical maximum, and the late bloomers that would raise it are the
very trials the rule aborts, so they never enter the history. On the replay grid with the 0.02
margin it aborted 53% of the candidates but a true Pareto point in 271 of 1,000 random orders
(a net at 0.10 after epoch 1 of 3 that ended at 0.96, another at 0.32 after epoch 2 that ended
at 0.90). The latency way therefore has its own, wider margin, ``latency_margin``: 0.12 was the
smallest of those tried that lost no Pareto point in the 1,000 orders; 0.15 (18% aborted, none
lost) leaves room for spaces and budgets other than that grid
(``benchmarks/sampler_replay.py --early-stop-only --seeds 1000 --latency-margins ...``).

A margin tuned on one grid lost a true Pareto point in 1 of 10 orders on another machine's grid,
so the margins also follow what the study itself observes. Every ``audit_every``-th trial (by
number) that the rule would abort trains to the end instead, recording the bound the rule
predicted for it (``accuracy + largest gain``, no margin). Audited trials are exactly the late
bloomers the rule otherwise hides: their gains enter the history, and the largest amount by which
any of them ended above its bound (the *miss*) raises both margins to ``miss + margin`` where that
exceeds them. A study whose candidates catch up more than the tuned margins allow thus widens them
after its first audited late bloomer, at the price of training a quarter of the hopeless trials.

Containment also bounds the objectives ``--objectives`` may add (a contained network has no more
MACs, weights or activations at the same precision, so no more energy and no larger file); the
latency comparison bounds only latency, so studies with more than the two objectives use
containment alone. The rule reads ``values[0]`` (accuracy) and ``values[1]`` (latency), the same
in every study (core/metrics.py). ``benchmarks/sampler_replay.py`` replays both ways on an
enumerated space and counts the true Pareto points they would have aborted. Training is
unchanged by the checks, so completed trials measure exactly what they did before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgeshrink.spaces.candidate import Candidate

CURVE_ATTR = "epoch_accuracy"  # torch validation accuracy after each distillation epoch
ABORT_ATTR = "aborted"  # why and when a trial was stopped early (epoch 0: before training)
AUDIT_ATTR = "audited"  # when the rule would have aborted a trial it let finish, and its bound
PREVIEW_ATTR = "preview_latency_ms"  # the latency previewed before training

# How far a trained artifact's latency may fall below its preview. Predicted latencies are read
# off the graph, which training does not change: 0. Measured ones are timed twice (preview, then
# artifact): re-timing a file on the host lands a median 2.6% and a 90th percentile 11.8% from
# its stored value (BENCHMARKS.md, "Latency noise", gauge-corrected); 0.25 is twice that
# percentile, since an abort wrongly made is a lost front point.
LATENCY_TOLERANCE: dict[str, float] = {"predicted": 0.0, "measured": 0.25}


def latency_tolerance(method: str) -> float:
    """The tolerance of a preview taken by ``method``; an unknown method gets the widest."""
    return LATENCY_TOLERANCE.get(method, max(LATENCY_TOLERANCE.values()))


@dataclass(frozen=True)
class Finished:
    """What the rule needs from one finished, feasible trial."""

    candidate: Candidate
    accuracy: float
    curve: tuple[float, ...]
    latency: float | None = None  # values[1], ms; None where unknown
    feasible: bool = True  # only a feasible trial is a rival; any trial's curve shows catch-up
    bound: float | None = None  # audited: the accuracy the rule predicted at most, no margin

    @property
    def miss(self) -> float | None:
        """How far an audited trial ended above the bound the rule predicted for it."""
        return None if self.bound is None else self.accuracy - self.bound


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
    latency_margin: float = 0.15  # the same, when a faster (not contained) trial is the rival
    min_finished: int = 10  # finished trials needed before anything is aborted
    sparse_kernels: bool = False  # the device's latency drops with sparsity
    audit_every: int = 4  # every n-th trial (by number) the rule would abort finishes; 0: none

    def audits(self, number: int) -> bool:
        """Whether trial ``number`` trains to the end even if the rule finds it hopeless."""
        return self.audit_every > 0 and (number + 1) % self.audit_every == 0

    @staticmethod
    def miss(history: Sequence[Finished]) -> float:
        """The largest amount an audited trial ended above its predicted bound (0 if none)."""
        return max([h.miss for h in history if h.miss is not None] + [0.0])

    def margins(self, history: Sequence[Finished]) -> tuple[float, float]:
        """The containment and latency margins, widened by the study's own misses."""
        needed = self.miss(history) + self.margin
        return max(self.margin, needed), max(self.latency_margin, needed)

    def bound(self, epoch: int, accuracy: float, history: Sequence[Finished]) -> float | None:
        """The final accuracy the rule predicts at most, before any margin; None if unknown."""
        gain = self.max_gain(history, epoch)
        return None if gain is None else accuracy + max(gain, 0.0)

    def max_gain(self, history: Sequence[Finished], epoch: int) -> float | None:
        """Largest final-minus-checkpoint accuracy gain seen after ``epoch``, or None if unknown."""
        gains = [h.accuracy - h.curve[epoch - 1] for h in history if len(h.curve) >= epoch]
        if len(gains) < self.min_finished:
            return None
        return max(gains)

    def reason(self, epoch: int, accuracy: float, candidate: Candidate,
               history: Sequence[Finished], min_accuracy: float | None = None,
               latency_ms: float | None = None, tolerance: float = 0.0) -> str | None:
        """Why the candidate is hopeless after ``epoch``, or None to keep training.

        ``latency_ms``: the candidate's preview latency, ``tolerance`` its
        :func:`latency_tolerance`; None compares by containment only.
        """
        bound = self.bound(epoch, accuracy, history)
        if bound is None:
            return None
        margin, latency_margin = self.margins(history)
        best_case = bound + margin
        if min_accuracy is not None and best_case < min_accuracy:
            return f"at most {best_case:.3f} accuracy reachable, below --min-accuracy"
        contained = [h for h in history if h.feasible and h.accuracy > best_case
                     and no_slower(h.candidate, candidate, self.sparse_kernels)]
        if contained:
            best = max(contained, key=lambda h: h.accuracy)
            return (f"at most {best_case:.3f} accuracy reachable; the smaller "
                    f"{best.candidate.arch} reached {best.accuracy:.3f}")
        if latency_ms is None:
            return None
        best_case = bound + latency_margin
        faster = [h for h in history if h.feasible and h.accuracy > best_case
                  and h.latency is not None
                  and h.latency <= latency_ms / (1 + tolerance)]
        if faster:
            best = max(faster, key=lambda h: h.accuracy)
            return (f"at most {best_case:.3f} accuracy reachable; {best.candidate.arch} "
                    f"reached {best.accuracy:.3f} at {best.latency:.4g} ms, this one "
                    f"previews {latency_ms:.4g} ms")
        return None


def finished_history(trials: Sequence[FrozenTrial]) -> list[Finished]:
    """Completed trials that recorded a learning curve, feasible or not."""
    out = []
    for t in trials:
        if t.state != TrialState.COMPLETE or CURVE_ATTR not in t.user_attrs:
            continue
        audit = t.user_attrs.get(AUDIT_ATTR)
        out.append(Finished(Candidate.from_dict(t.user_attrs["candidate"]), t.values[0],
                            tuple(t.user_attrs[CURVE_ATTR]),
                            t.values[1] if len(t.values) > 1 else None,
                            feasible=not any(v > 0 for v in t.constraints.values()),
                            bound=audit["bound"] if audit else None))
    return out


class TrialWatcher:
    """One trial's callbacks for the pipeline: ``on_preview`` before training, then itself as
    ``on_epoch`` after each epoch. Each records what it saw and raises TrialPruned if hopeless,
    unless the trial is one the rule audits (it then records the bound and trains on).

    The history is read once, when the trial starts. The preview latency is compared with
    finished trials' latencies only in two-objective studies (see the module docstring).
    """

    def __init__(self, trial: optuna.Trial, candidate: Candidate, rule: EarlyStopRule,
                 min_accuracy: float | None = None, max_latency_ms: float | None = None):
        self.trial, self.candidate, self.rule = trial, candidate, rule
        self.min_accuracy, self.max_latency_ms = min_accuracy, max_latency_ms
        self.history = finished_history(trial.study.get_trials(deepcopy=False))
        self.compare_latency = len(trial.study.directions) == 2
        self.curve: list[float] = []
        self.latency_ms: float | None = None
        self.tolerance = 0.0
        self.audit = rule.audits(trial.number)
        self.audited = False  # the rule found it hopeless once; it trains to the end unchecked

    def _abort(self, epoch: int, why: str) -> None:
        self.trial.set_user_attr(ABORT_ATTR, {"epoch": epoch, "reason": why})
        raise optuna.TrialPruned(f"epoch {epoch}: {why}")

    def on_preview(self, latency_ms: float, method: str) -> None:
        """Before training: abort a candidate whose latency already breaks --max-latency-ms."""
        self.trial.set_user_attr(PREVIEW_ATTR, latency_ms)
        tolerance = latency_tolerance(method)
        if self.max_latency_ms is not None and latency_ms > self.max_latency_ms * (1 + tolerance):
            self._abort(0, f"{method} latency {latency_ms:.4g} ms before training, over "
                           f"--max-latency-ms {self.max_latency_ms:g}"
                           + (f" by more than {tolerance:.0%}" if tolerance else ""))
        if self.compare_latency:
            self.latency_ms, self.tolerance = latency_ms, tolerance

    def __call__(self, epoch: int, accuracy: float) -> None:
        self.curve.append(round(accuracy, 6))
        self.trial.set_user_attr(CURVE_ATTR, self.curve)
        if self.audited:
            return
        why = self.rule.reason(epoch, accuracy, self.candidate, self.history, self.min_accuracy,
                               self.latency_ms, self.tolerance)
        if why is None:
            return
        if self.audit:
            self.audited = True
            self.trial.set_user_attr(AUDIT_ATTR, {
                "epoch": epoch, "reason": why,
                "bound": round(self.rule.bound(epoch, accuracy, self.history), 6)})
            return
        self._abort(epoch, why)

