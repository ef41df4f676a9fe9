"""Early abort of hopeless trials, the hypervolume used to judge samplers, and the MAC count."""

import numpy as np
import optuna
import pytest
import torch
from optuna._hypervolume import compute_hypervolume
from optuna.trial import create_trial

from edgeshrink.evaluators.training import TrainSettings, model_accuracy, train_distilled
from edgeshrink.search.early_stop import (
    ABORT_ATTR,
    AUDIT_ATTR,
    CURVE_ATTR,
    LATENCY_TOLERANCE,
    PREVIEW_ATTR,
    EarlyStopRule,
    Finished,
    TrialWatcher,
    finished_history,
    no_slower,
)
from edgeshrink.search.hypervolume import hypervolume_2d, nadir_reference, pareto_2d
from edgeshrink.spaces.candidate import Candidate


def _cand(width=0.5, blocks=("ds_k3_r1_s1_c16", "ir_k3_e3_r1_s2_c24"), precision="fp32",
          sparsity=0.0):
    return Candidate.from_dict({"width_mult": width, "stages": list(blocks), "temperature": 4.0,
                                "alpha": 0.5, "sparsity": sparsity, "precision": precision})


SMALL = _cand()
BIG = _cand(1.0, ("ds_k5_r2_s1_c16", "ir_k5_e6_r1_s2_c24"))
OTHER = _cand(1.0, ("ir_k5_e6_r2_s1_c16", "ir_k5_e6_r1_s2_c24"))  # ds -> ir: not comparable
# Ten finished copies of SMALL: each gained at most 0.10 after epoch 1 and 0.05 after epoch 2,
# and each runs in 1 ms.
HISTORY = [Finished(SMALL, 0.90, (0.80, 0.85), latency=1.0)] * 10


def test_hypervolume_matches_optuna_on_random_fronts():
    rng = np.random.default_rng(0)
    for _ in range(5):
        pts = rng.random((30, 2))
        ref = (0.05, 1.05)
        # Optuna minimises every objective: negate accuracy.
        loss = np.column_stack([-pts[:, 0], pts[:, 1]])
        loss = loss[(pts[:, 0] > ref[0]) & (pts[:, 1] < ref[1])]
        expected = compute_hypervolume(loss, np.array([-ref[0], ref[1]]))
        assert hypervolume_2d(map(tuple, pts), ref) == pytest.approx(expected, rel=1e-12)
    assert hypervolume_2d([(0.5, 1.0), (0.9, 1.5)], (0.0, 2.0)) == pytest.approx(0.7)
    assert hypervolume_2d([(0.5, 3.0)], (0.0, 2.0)) == 0.0


def test_containment_means_no_faster():
    assert no_slower(SMALL, BIG) and not no_slower(BIG, SMALL)
    assert not no_slower(SMALL, OTHER)
    assert not no_slower(SMALL, _cand(1.0, BIG.to_dict()["stages"], precision="int8"))
    assert no_slower(SMALL, _cand(sparsity=0.5))
    # Where the device skips zeros, a sparser network may be faster.
    assert not no_slower(SMALL, _cand(sparsity=0.5), sparse_kernels=True)
    # Squeeze-excitation adds work: a block without it fits inside one with it, not the reverse.
    se_small = _cand(blocks=("ds_k3_se_r1_s1_c16", "ir_k3_e3_r1_s2_c24"))
    se_big = _cand(1.0, ("ds_k5_se_r2_s1_c16", "ir_k5_e6_se_r1_s2_c24"))
    assert no_slower(SMALL, se_big) and no_slower(se_small, se_big)
    assert not no_slower(se_small, BIG)
    assert not no_slower(SMALL, _cand(1.0, ("ds_k5_hs_r2_s1_c16", "ir_k5_e6_hs_r1_s2_c24")))
    # Channel pruning removes channels on any device: only a more pruned network is contained.
    pruned = Candidate.from_dict({**BIG.to_dict(), "pruning": "channel", "sparsity": 0.5})
    assert not no_slower(SMALL, pruned)
    assert no_slower(Candidate.from_dict({**SMALL.to_dict(), "pruning": "channel",
                                          "sparsity": 0.6}), pruned)
    mixed = Candidate.from_dict({**BIG.to_dict(), "stage_precisions": ["int8", "fp32"]})
    assert not no_slower(SMALL, mixed)


def test_rule_aborts_only_when_a_contained_trial_is_out_of_reach():
    rule = EarlyStopRule(margin=0.02, min_finished=10)
    assert rule.max_gain(HISTORY, 1) == pytest.approx(0.10)
    # Best case 0.70 + 0.10 + 0.02 = 0.82 < 0.90, reached by SMALL inside BIG: aborted.
    assert "reached 0.900" in rule.reason(1, 0.70, BIG, HISTORY)
    # Best case 0.79 + 0.10 + 0.02 = 0.91 > 0.90: kept.
    assert rule.reason(1, 0.79, BIG, HISTORY) is None
    # Nothing contained in it finished: kept, however poor.
    assert rule.reason(1, 0.10, OTHER, HISTORY) is None
    # Too little history: never abort.
    assert rule.reason(1, 0.10, BIG, HISTORY[:9]) is None
    # A --min-accuracy it cannot reach, even with nothing to compare with.
    why = rule.reason(2, 0.80, OTHER, HISTORY, min_accuracy=0.9)
    assert why is not None and "min-accuracy" in why


def test_rule_aborts_a_candidate_a_faster_trial_beats():
    """OTHER contains no finished network; its preview latency decides."""
    rule = EarlyStopRule(margin=0.02, latency_margin=0.15, min_finished=10)
    # Best case 0.60 + 0.10 + 0.15 = 0.85 < 0.90, and the finished trials run in 1 ms against
    # its 2 ms: it could only end dominated.
    why = rule.reason(1, 0.60, OTHER, HISTORY, latency_ms=2.0)
    assert why is not None and "reached 0.900 at 1 ms" in why and "previews 2 ms" in why
    assert rule.reason(1, 0.60, OTHER, HISTORY, latency_ms=1.0) is not None  # as fast: too
    # Faster than every finished trial: it may end on the front, however poor now.
    assert rule.reason(1, 0.10, OTHER, HISTORY, latency_ms=0.99) is None
    # Without a preview, containment alone: kept.
    assert rule.reason(1, 0.60, OTHER, HISTORY) is None
    # 0.70 + 0.10 + 0.15 = 0.95 may still be reached: kept, though containment's narrower
    # margin would abort the same accuracy (0.82 < 0.90, BIG contains SMALL).
    assert rule.reason(1, 0.70, OTHER, HISTORY, latency_ms=2.0) is None
    assert rule.reason(1, 0.70, BIG, HISTORY, latency_ms=2.0) is not None
    # A measured preview 1.2 ms may end at 1.2 / 1.25 = 0.96 ms, faster than 1 ms: kept.
    tol = LATENCY_TOLERANCE["measured"]
    assert rule.reason(1, 0.60, OTHER, HISTORY, latency_ms=1.2, tolerance=tol) is None
    assert rule.reason(1, 0.60, OTHER, HISTORY, latency_ms=1.3, tolerance=tol) is not None
    # Finished trials of unknown latency never count as faster.
    unknown = [Finished(SMALL, 0.90, (0.80, 0.85))] * 10
    assert rule.reason(1, 0.60, OTHER, unknown, latency_ms=2.0) is None


def _study(n_objectives: int = 2, latency: float = 1.0) -> optuna.Study:
    study = optuna.create_study(directions=["maximize"] + ["minimize"] * (n_objectives - 1))
    for h in HISTORY:
        study.add_trial(create_trial(values=[h.accuracy, latency] + [1.0] * (n_objectives - 2),
                                     user_attrs={CURVE_ATTR: list(h.curve),
                                                 "candidate": h.candidate.to_dict()}))
    return study


def test_history_reads_latency_from_the_second_value():
    history = finished_history(_study(3, latency=0.25).trials)
    assert len(history) == 10 and {h.latency for h in history} == {0.25}


@pytest.mark.parametrize(("n_objectives", "aborted"), [(2, True), (3, False)])
def test_watcher_compares_latency_only_in_two_objective_studies(n_objectives, aborted):
    study = _study(n_objectives)
    watch = TrialWatcher(study.ask(), OTHER, EarlyStopRule())
    watch.on_preview(2.0, "predicted")
    if aborted:  # a finished trial at 1 ms has 0.90; at most 0.85 is reachable from 0.60
        with pytest.raises(optuna.TrialPruned):
            watch(1, 0.60)
        assert "at 1 ms" in study.trials[-1].user_attrs[ABORT_ATTR]["reason"]
    else:  # energy or size may favour the slower one: containment only
        watch(1, 0.60)
    assert study.trials[-1].user_attrs[PREVIEW_ATTR] == 2.0


def test_preview_over_the_latency_limit_aborts_before_training():
    study = _study()
    watch = TrialWatcher(study.ask(), OTHER, EarlyStopRule(), max_latency_ms=1.5)
    with pytest.raises(optuna.TrialPruned):
        watch.on_preview(1.6, "predicted")
    attrs = study.trials[-1].user_attrs
    assert attrs[ABORT_ATTR]["epoch"] == 0 and "--max-latency-ms 1.5" in attrs[ABORT_ATTR]["reason"]
    assert attrs[PREVIEW_ATTR] == 1.6 and CURVE_ATTR not in attrs
    # Measured: 1.6 ms may still end at 1.28 ms, within the limit; 1.9 ms may not.
    TrialWatcher(study.ask(), OTHER, EarlyStopRule(), max_latency_ms=1.5).on_preview(
        1.6, "measured")
    with pytest.raises(optuna.TrialPruned):
        TrialWatcher(study.ask(), OTHER, EarlyStopRule(), max_latency_ms=1.5).on_preview(
            1.9, "measured")
    # Within the limit, or no limit: goes on to training.
    TrialWatcher(study.ask(), OTHER, EarlyStopRule(), max_latency_ms=1.5).on_preview(
        1.5, "predicted")
    TrialWatcher(study.ask(), OTHER, EarlyStopRule()).on_preview(100.0, "predicted")


def test_search_with_a_latency_limit_trains_nothing_it_cannot_keep(seeded_run_dir):
    from edgeshrink.search.runner import SearchOptions, run_search

    # Seed 0 reuses the session's teacher; the Pi profile predicts, so nothing is timed here.
    study = run_search(SearchOptions(study="lim", run_dir=seeded_run_dir, trials=2, seed=0,
                                     sampler="random", max_latency=1e-6, epochs=1,
                                     finetune_epochs=1, progress=False,
                                     profile="raspberry-pi-4"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    for t in study.trials:
        assert t.user_attrs[ABORT_ATTR]["epoch"] == 0 and t.user_attrs[PREVIEW_ATTR] > 1e-6
        assert CURVE_ATTR not in t.user_attrs  # not one epoch of training
    assert not (seeded_run_dir / "trials").exists() or not any(
        p.name.isdigit() for p in (seeded_run_dir / "trials").iterdir())


def test_watcher_records_the_curve_and_prunes_through_optuna():
    study = _study()
    trial = study.ask()
    watch = TrialWatcher(trial, BIG, EarlyStopRule())
    watch(1, 0.85)  # best case 0.97: keeps training
    with pytest.raises(optuna.TrialPruned):
        watch(2, 0.50)  # best case 0.57 < 0.90
    attrs = study.trials[-1].user_attrs
    assert attrs[CURVE_ATTR] == [0.85, 0.5] and attrs[ABORT_ATTR]["epoch"] == 2


def test_epoch_callback_does_not_change_training():
    from edgeshrink.spaces.blocks import build_student

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 1, 16, 16, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    teacher = torch.randn(128, 10, generator=gen)
    settings = TrainSettings(batch_size=32)
    states, seen = [], []
    for watch in (False, True):
        torch.manual_seed(0)
        model = build_student(SMALL, 1, 10)

        def callback(epoch: int, model=model) -> None:  # as the pipeline does: eval mode
            seen.append((epoch, model_accuracy(model, x, y)))

        loss = train_distilled(model, x, y, teacher, epochs=2, settings=settings,
                               temperature=4.0, alpha=0.5, seed=1,
                               after_epoch=callback if watch else None)
        states.append((loss, {k: v.clone() for k, v in model.state_dict().items()}))
    assert [e for e, _ in seen] == [1, 2] and all(0 <= a <= 1 for _, a in seen)
    assert states[0][0] == states[1][0]
    for k, v in states[0][1].items():
        assert torch.equal(v, states[1][1][k]), k


def test_latency_is_previewed_where_it_is_cheap_or_saves_trials():
    from types import SimpleNamespace

    from edgeshrink.hardware_profiles.registry import load_profile
    from edgeshrink.search.trial import Objective

    def wants(profile: str, limit: float | None) -> bool:
        return Objective.wants_preview.fget(SimpleNamespace(profile=load_profile(profile),
                                                            max_latency_ms=limit))

    assert wants("raspberry-pi-4", None) and wants("raspberry-pi-4", 1.0)
    assert wants("host", 0.05) and not wants("host", None)


def test_pareto_points_and_the_nadir_reference_of_the_benchmarks():
    pts = [(0.90, 1.0), (0.95, 2.0), (0.93, 2.5), (0.90, 1.0), (0.99, 4.0)]
    front = pareto_2d(pts)
    assert sorted(set(front)) == [(0.90, 1.0), (0.95, 2.0), (0.99, 4.0)]
    assert nadir_reference(front) == pytest.approx((0.90 - 0.009, 4.0 + 0.3))
    assert nadir_reference([(0.9, 1.0)]) == pytest.approx((0.899, 1.001))  # no range: 0.01


def test_an_audited_late_bloomer_widens_both_margins():
    rule = EarlyStopRule(margin=0.02, latency_margin=0.15, min_finished=10)
    assert rule.margins(HISTORY) == (0.02, 0.15)
    # Audited at 0.30 after epoch 1 (bound 0.30 + 0.10 = 0.40), it ended at 0.95: a miss of 0.55.
    bloomer = Finished(OTHER, 0.95, (0.30, 0.60), latency=3.0, bound=0.40)
    history = [*HISTORY, bloomer]
    assert bloomer.miss == pytest.approx(0.55)
    containment, latency = rule.margins(history)
    assert containment == pytest.approx(0.57) and latency == pytest.approx(0.57)
    # Its catch-up (0.65 after epoch 1) is now the largest gain too: 0.60 + 0.65 + 0.57 > 0.90.
    assert rule.reason(1, 0.60, OTHER, history, latency_ms=2.0) is None
    assert rule.reason(1, 0.60, OTHER, HISTORY, latency_ms=2.0) is not None
    # An audited trial that ended within its bound changes nothing.
    assert rule.margins([*HISTORY, Finished(OTHER, 0.30, (0.2, 0.25), bound=0.35)]) == (0.02, 0.15)


def test_an_infeasible_trial_is_no_rival_but_its_curve_counts():
    rule = EarlyStopRule(margin=0.02, min_finished=10)
    infeasible = [Finished(SMALL, 0.90, (0.80, 0.85), latency=1.0, feasible=False)] * 10
    assert rule.max_gain(infeasible, 1) == pytest.approx(0.10)
    assert rule.reason(1, 0.70, BIG, infeasible) is None


def test_watcher_audits_every_fourth_trial_the_rule_would_abort():
    study = _study()
    rule = EarlyStopRule()
    numbers = []
    for _ in range(4):
        trial = study.ask()
        trial.set_user_attr("candidate", BIG.to_dict())
        watch = TrialWatcher(trial, BIG, rule)
        try:
            watch(1, 0.50)  # best case 0.62 < 0.90: hopeless
            watch(2, 0.55)  # audited: no longer checked
        except optuna.TrialPruned:
            continue
        study.tell(trial, [0.93, 2.0])
        numbers.append(trial.number)
    # Trial 10 is aborted; 11 is audited ((11 + 1) % 4 == 0) and ends 0.33 above its bound, so
    # from then on the same start is no longer hopeless: 12 and 13 train to the end too.
    assert numbers == [11, 12, 13]
    audited = study.trials[11].user_attrs[AUDIT_ATTR]
    assert audited["epoch"] == 1 and audited["bound"] == pytest.approx(0.60)
    assert study.trials[11].user_attrs[CURVE_ATTR] == [0.5, 0.55]
    (late,) = [h for h in finished_history(study.trials) if h.bound is not None]
    assert late.miss == pytest.approx(0.33) and rule.margins([late])[1] == pytest.approx(0.35)
    assert AUDIT_ATTR not in study.trials[12].user_attrs  # kept by the wider margin
